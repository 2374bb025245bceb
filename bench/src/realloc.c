/* realloc.c - realloc growth patterns: (a) strings grown by small appends of
 * 1..16 bytes (string builders, line readers), (b) arrays grown by doubling
 * (vectors), (c) occasional shrink-to-fit.  Many objects grow interleaved, so an
 * allocator cannot always grow in place.  Contents are verified at the end:
 * byte i of object k must equal a function of (k, i).
 *
 * usage: realloc SIZE THREADS     SIZE = append operations per thread
 * prints: RESULT realloc elapsed_s=... check=<hash> */
#include "common.h"
#include <pthread.h>

#define NOBJ 256
static long ops;

static inline unsigned char byte_at(int k, size_t i) { return (unsigned char)(k * 7 + i * 13 + (i >> 8)); }

typedef struct { uint64_t hash; int id; } res_t;

static void *worker(void *arg) {
  res_t *res = (res_t *)arg;
  uint64_t r = 0x5eedull + (uint64_t)res->id * 97;
  unsigned char *s[NOBJ] = {0};
  size_t len[NOBJ] = {0}, cap[NOBJ] = {0};
  uint64_t h = 0;
  for (long n = 0; n < ops; n++) {
    int k = (int)(rng_next(&r) % NOBJ);
    size_t add = (size_t)rng_range(&r, 1, 16);
    if (k & 1) { /* string builder: realloc to the exact new length every time */
      s[k] = realloc(s[k], len[k] + add);
      if (!s[k]) die("realloc returned NULL");
      cap[k] = len[k] + add;
    } else if (len[k] + add > cap[k]) { /* vector: double the capacity */
      size_t nc = cap[k] ? cap[k] * 2 : 16;
      while (nc < len[k] + add) nc *= 2;
      s[k] = realloc(s[k], nc);
      if (!s[k]) die("realloc returned NULL");
      cap[k] = nc;
    }
    for (size_t i = 0; i < add; i++) s[k][len[k] + i] = byte_at(k, len[k] + i);
    len[k] += add;
    if (len[k] > 64 * 1024 || (rng_next(&r) % 4096) == 0) { /* verify, then shrink-to-fit and restart */
      for (size_t i = 0; i < len[k]; i++)
        if (s[k][i] != byte_at(k, i)) die("realloc: object %d byte %zu wrong after growth", k, i);
      h = mix_hash(h, len[k]);
      size_t keep = len[k] / 8 + 1;
      s[k] = realloc(s[k], keep);
      if (!s[k]) die("realloc returned NULL");
      for (size_t i = 0; i < keep; i++)
        if (s[k][i] != byte_at(k, i)) die("realloc: object %d byte %zu wrong after shrink", k, i);
      len[k] = cap[k] = keep;
    }
  }
  for (int k = 0; k < NOBJ; k++) {
    for (size_t i = 0; i < len[k]; i++)
      if (s[k][i] != byte_at(k, i)) die("realloc: object %d byte %zu wrong at end", k, i);
    h = mix_hash(h, len[k]);
    free(s[k]);
  }
  res->hash = h;
  return NULL;
}

int main(int argc, char **argv) {
  ops = arg_long(argc, argv, 1, 3000000);
  int threads = (int)arg_long(argc, argv, 2, 1);
  pthread_t *tid = xmalloc(sizeof(pthread_t) * (size_t)threads);
  res_t *res = xmalloc(sizeof(res_t) * (size_t)threads);
  double t0 = now_s();
  for (int t = 0; t < threads; t++) {
    res[t].id = t;
    if (pthread_create(&tid[t], NULL, worker, &res[t])) die("pthread_create");
  }
  uint64_t h = 0;
  for (int t = 0; t < threads; t++) { pthread_join(tid[t], NULL); h = mix_hash(h, res[t].hash); }
  double el = now_s() - t0;
  printf("RESULT realloc elapsed_s=%.4f ops=%ld threads=%d check=%016llx\n", el, ops * threads, threads,
         (unsigned long long)h);
  free(tid);
  free(res);
  return 0;
}
