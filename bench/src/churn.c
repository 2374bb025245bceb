/* churn.c - object churn from a real computation, in the spirit of the "cfrac"
 * benchmark (continued-fraction factoring with heap-allocated bignums, used by
 * Zorn & Grunwald, Hoard, mimalloc-bench).  Every bignum is an immutable,
 * individually malloc'ed digit array; every arithmetic operation allocates its
 * result and the temporaries of long division, and frees dead operands.
 *
 * Work: factor SIZE composite numbers n = p*q1*q2 (p ~ 2^21, q1,q2 ~ 2^60, so n
 * is a 4-5 limb bignum) with Pollard's rho (Floyd cycle finding, gcd batched
 * every 32 steps), and compute Fibonacci numbers up to F(4000) with immutable
 * bignum additions (growing arrays, up to ~350 B).  Answers are checked: the found
 * factor must divide n, and F(k) mod 1e9+7 must match native arithmetic.
 * THREADS threads each take an equal share of the numbers.
 *
 * usage: churn SIZE THREADS
 * prints: RESULT churn elapsed_s=... check=<hash of all factors found> */
#include "common.h"
#include <pthread.h>

typedef struct {
  int n;          /* limbs in use; 0 means zero */
  uint32_t d[];   /* little-endian base 2^32 */
} big;

static big *big_alloc(int n) {
  big *b = xmalloc(sizeof(big) + sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
  b->n = n;
  return b;
}
static big *big_norm(big *b) {
  while (b->n > 0 && b->d[b->n - 1] == 0) b->n--;
  return b;
}
static big *big_u64(uint64_t x) {
  big *b = big_alloc(2);
  b->d[0] = (uint32_t)x;
  b->d[1] = (uint32_t)(x >> 32);
  return big_norm(b);
}
static big *big_copy(const big *a) {
  big *b = big_alloc(a->n);
  memcpy(b->d, a->d, sizeof(uint32_t) * (size_t)a->n);
  return b;
}
static int big_cmp(const big *a, const big *b) {
  if (a->n != b->n) return a->n < b->n ? -1 : 1;
  for (int i = a->n - 1; i >= 0; i--)
    if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
  return 0;
}
static big *big_add(const big *a, const big *b) {
  if (a->n < b->n) { const big *t = a; a = b; b = t; }
  big *r = big_alloc(a->n + 1);
  uint64_t c = 0;
  for (int i = 0; i < a->n; i++) {
    c += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
    r->d[i] = (uint32_t)c;
    c >>= 32;
  }
  r->d[a->n] = (uint32_t)c;
  return big_norm(r);
}
static big *big_sub(const big *a, const big *b) { /* requires a >= b */
  big *r = big_alloc(a->n);
  int64_t br = 0;
  for (int i = 0; i < a->n; i++) {
    int64_t t = (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - br;
    br = t < 0;
    r->d[i] = (uint32_t)t;
  }
  if (br) die("churn: big_sub underflow");
  return big_norm(r);
}
static big *big_absdiff(const big *a, const big *b) { return big_cmp(a, b) >= 0 ? big_sub(a, b) : big_sub(b, a); }
static big *big_mul(const big *a, const big *b) {
  big *r = big_alloc(a->n + b->n);
  memset(r->d, 0, sizeof(uint32_t) * (size_t)r->n);
  for (int i = 0; i < a->n; i++) {
    uint64_t c = 0;
    for (int j = 0; j < b->n; j++) {
      c += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
      r->d[i + j] = (uint32_t)c;
      c >>= 32;
    }
    r->d[i + b->n] = (uint32_t)c;
  }
  return big_norm(r);
}
static uint32_t big_mod_u32(const big *a, uint32_t m) {
  uint64_t r = 0;
  for (int i = a->n - 1; i >= 0; i--) r = ((r << 32) | a->d[i]) % m;
  return (uint32_t)r;
}
/* Remainder u mod v, Knuth's algorithm D (after Hacker's Delight divmnu). */
static big *big_mod(const big *u, const big *v) {
  if (v->n == 0) die("churn: division by zero");
  if (big_cmp(u, v) < 0) return big_copy(u);
  if (v->n == 1) return big_u64(big_mod_u32(u, v->d[0]));
  int m = u->n, n = v->n, s = __builtin_clz(v->d[n - 1]);
  uint32_t *vn = xmalloc(sizeof(uint32_t) * (size_t)n);
  uint32_t *un = xmalloc(sizeof(uint32_t) * (size_t)(m + 1));
  for (int i = n - 1; i > 0; i--) vn[i] = (v->d[i] << s) | (s ? (uint32_t)((uint64_t)v->d[i - 1] >> (32 - s)) : 0);
  vn[0] = v->d[0] << s;
  un[m] = s ? (uint32_t)((uint64_t)u->d[m - 1] >> (32 - s)) : 0;
  for (int i = m - 1; i > 0; i--) un[i] = (u->d[i] << s) | (s ? (uint32_t)((uint64_t)u->d[i - 1] >> (32 - s)) : 0);
  un[0] = u->d[0] << s;
  for (int j = m - n; j >= 0; j--) {
    uint64_t num = ((uint64_t)un[j + n] << 32) | un[j + n - 1];
    uint64_t qhat = num / vn[n - 1], rhat = num % vn[n - 1];
    while (qhat >= (1ull << 32) || qhat * vn[n - 2] > ((rhat << 32) | un[j + n - 2])) {
      qhat--;
      rhat += vn[n - 1];
      if (rhat >= (1ull << 32)) break;
    }
    int64_t k = 0, t;
    for (int i = 0; i < n; i++) {
      uint64_t p = qhat * vn[i];
      t = (int64_t)un[i + j] - k - (int64_t)(p & 0xFFFFFFFFull);
      un[i + j] = (uint32_t)t;
      k = (int64_t)(p >> 32) - (t >> 32);
    }
    t = (int64_t)un[j + n] - k;
    un[j + n] = (uint32_t)t;
    if (t < 0) {
      uint64_t c = 0;
      for (int i = 0; i < n; i++) {
        c += (uint64_t)un[i + j] + vn[i];
        un[i + j] = (uint32_t)c;
        c >>= 32;
      }
      un[j + n] += (uint32_t)c;
    }
  }
  big *r = big_alloc(n);
  for (int i = 0; i < n - 1; i++) r->d[i] = (un[i] >> s) | (s ? (uint32_t)((uint64_t)un[i + 1] << (32 - s)) : 0);
  r->d[n - 1] = un[n - 1] >> s;
  free(un);
  free(vn);
  return big_norm(r);
}
static big *big_gcd(const big *a0, const big *b0) {
  big *a = big_copy(a0), *b = big_copy(b0);
  while (b->n > 0) {
    big *r = big_mod(a, b);
    free(a);
    a = b;
    b = r;
  }
  free(b);
  return a;
}

/* ---- native helpers for setup and checks ---- */
static uint64_t mulmod64(uint64_t a, uint64_t b, uint64_t m) { return (uint64_t)((unsigned __int128)a * b % m); }
static uint64_t powmod64(uint64_t a, uint64_t e, uint64_t m) {
  uint64_t r = 1;
  for (a %= m; e; e >>= 1, a = mulmod64(a, a, m))
    if (e & 1) r = mulmod64(r, a, m);
  return r;
}
static int is_prime64(uint64_t n) {
  static const uint64_t bases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  if (n < 2) return 0;
  for (int i = 0; i < 12; i++)
    if (n % bases[i] == 0) return n == bases[i];
  uint64_t d = n - 1;
  int s = 0;
  while (!(d & 1)) { d >>= 1; s++; }
  for (int i = 0; i < 12; i++) {
    uint64_t x = powmod64(bases[i], d, n);
    if (x == 1 || x == n - 1) continue;
    int ok = 0;
    for (int r = 1; r < s && !ok; r++) { x = mulmod64(x, x, n); ok = (x == n - 1); }
    if (!ok) return 0;
  }
  return 1;
}
static uint64_t rand_prime(uint64_t *r, int bits) {
  for (;;) {
    uint64_t x = (rng_next(r) >> (64 - bits)) | (1ull << (bits - 1)) | 1;
    if (is_prime64(x)) return x;
  }
}

/* f(x) = x^2 + c mod n */
static big *rho_f(const big *x, const big *c, const big *n) {
  big *sq = big_mul(x, x), *s = big_add(sq, c), *r = big_mod(s, n);
  free(sq);
  free(s);
  return r;
}
/* Pollard rho; returns a nontrivial factor of n (n composite, no tiny factors). */
static big *rho(const big *n, uint64_t *steps) {
  for (uint64_t cc = 1;; cc++) {
    big *c = big_u64(cc), *x = big_u64(2), *y = big_u64(2), *q = big_u64(1), *g = NULL;
    big *xs = big_copy(x), *ys = big_copy(y); /* saved state for backtracking */
    for (uint64_t it = 1; it < 2000000; it++) {
      big *t = rho_f(x, c, n); free(x); x = t;
      t = rho_f(y, c, n); free(y); y = t;
      t = rho_f(y, c, n); free(y); y = t;
      big *d = big_absdiff(x, y), *qd = big_mul(q, d);
      free(d); free(q);
      q = big_mod(qd, n);
      free(qd);
      (*steps)++;
      if (it % 32 == 0) {
        g = big_gcd(q, n);
        if (g->n == 1 && g->d[0] == 1) { free(g); g = NULL; free(xs); free(ys); xs = big_copy(x); ys = big_copy(y); continue; }
        /* backtrack from the saved state one step at a time */
        free(g); g = NULL;
        free(x); free(y); x = xs; y = ys; xs = ys = NULL;
        for (int k = 0; k < 32; k++) {
          t = rho_f(x, c, n); free(x); x = t;
          t = rho_f(y, c, n); free(y); y = t;
          t = rho_f(y, c, n); free(y); y = t;
          big *dd = big_absdiff(x, y);
          g = big_gcd(dd, n);
          free(dd);
          if (!(g->n == 1 && g->d[0] == 1)) break;
          free(g); g = NULL;
        }
        break;
      }
    }
    free(c); free(x); free(y); free(q); free(xs); free(ys);
    if (g != NULL && big_cmp(g, n) != 0) return g;
    free(g); /* failure (cycle without split): next c */
  }
}

static void selftest(void) {
  uint64_t r = 99;
  for (int i = 0; i < 2000; i++) {
    uint64_t a = rng_next(&r), b = rng_next(&r) >> (rng_next(&r) % 40), m = rng_next(&r) >> (rng_next(&r) % 60);
    if (m == 0) m = 7;
    big *A = big_u64(a), *B = big_u64(b), *M = big_u64(m), *P = big_mul(A, B), *R = big_mod(P, M);
    uint64_t want = (uint64_t)((unsigned __int128)a * b % m);
    uint64_t got = R->n == 0 ? 0 : R->n == 1 ? R->d[0] : ((uint64_t)R->d[1] << 32 | R->d[0]);
    if (got != want) die("churn: bignum self-test failed: %llu*%llu mod %llu", (unsigned long long)a, (unsigned long long)b, (unsigned long long)m);
    free(A); free(B); free(M); free(P); free(R);
  }
}

typedef struct { int first, count; uint64_t hash, steps; } job_t;

static void *work(void *arg) {
  job_t *j = (job_t *)arg;
  for (int i = j->first; i < j->first + j->count; i++) {
    uint64_t r = 0xc0ffeeull + (uint64_t)i * 2654435761u;
    uint64_t p = rand_prime(&r, 21), q1 = rand_prime(&r, 60), q2 = rand_prime(&r, 59);
    big *P = big_u64(p), *Q1 = big_u64(q1), *Q2 = big_u64(q2), *t = big_mul(P, Q1), *n = big_mul(t, Q2);
    free(t);
    big *f = rho(n, &j->steps);
    big *rem = big_mod(n, f);
    if (rem->n != 0 || f->n == 0 || (f->n == 1 && f->d[0] == 1)) die("churn: rho returned a non-divisor for number %d", i);
    for (int k = 0; k < f->n; k++) j->hash = mix_hash(j->hash, f->d[k]);
    free(rem); free(f); free(n); free(P); free(Q1); free(Q2);
    /* Fibonacci with immutable additions, every 8th number */
    if (i % 8 == 0) {
      int kmax = 1000 + (i * 37) % 3000;
      big *a = big_u64(0), *b = big_u64(1);
      uint64_t na = 0, nb = 1, M = 1000000007u;
      for (int k = 0; k < kmax; k++) {
        big *c = big_add(a, b);
        free(a); a = b; b = c;
        uint64_t nc = (na + nb) % M; na = nb; nb = nc;
      }
      if (big_mod_u32(a, (uint32_t)M) != na) die("churn: F(%d) mod 1e9+7 mismatch", kmax);
      j->hash = mix_hash(j->hash, na);
      free(a); free(b);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  int size = (int)arg_long(argc, argv, 1, 200);
  int threads = (int)arg_long(argc, argv, 2, 2);
  selftest();
  job_t *jobs = xmalloc(sizeof(job_t) * (size_t)threads);
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  double t0 = now_s();
  for (int t = 0, at = 0; t < threads; t++) {
    int cnt = size / threads + (t < size % threads);
    jobs[t] = (job_t){at, cnt, 0, 0};
    at += cnt;
    if (pthread_create(&tid[t], NULL, work, &jobs[t])) die("pthread_create");
  }
  uint64_t h = 0, steps = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    h = mix_hash(h, jobs[t].hash);
    steps += jobs[t].steps;
  }
  double el = now_s() - t0;
  printf("RESULT churn elapsed_s=%.4f rho_steps=%llu threads=%d check=%016llx\n", el, (unsigned long long)steps,
         threads, (unsigned long long)h);
  free(jobs);
  free(tid);
  return 0;
}
