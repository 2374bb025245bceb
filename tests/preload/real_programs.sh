#!/bin/bash
# real_programs.sh CASE LIBGALLEON WORKDIR
# Runs a real Debian program twice, without and with LD_PRELOAD=LIBGALLEON, and
# requires the same stdout and exit status.
#   CASE: python | python_malloc | sqlite | perl | gcc | coreutils | preload_active
# A program the case needs that is not installed fails the test in CI (CI=true, as
# CI services set it, or GALLEON_REQUIRE_PROGRAMS=1: .ci/run installs them all) and
# skips it elsewhere (exit 77, CTest: skipped), for a developer without it.
# What each case needs (Debian package): python3 (python3), sqlite3 (sqlite3),
# perl (perl), gcc (gcc), nm and objdump (binutils), awk (mawk), sort, ls, md5sum,
# env, date, wc, head, tail (coreutils), cmp and diff (diffutils), /usr/include
# (libc6-dev).
set -u
case_name=$1
lib=$2
work=$3/$case_name
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1

[ -f "$lib" ] || { echo "no library at $lib"; exit 1; }

required() {
  [ "${GALLEON_REQUIRE_PROGRAMS:-0}" = 1 ] && return 0
  case "${CI:-}" in
    true | TRUE | True | 1 | yes) return 0 ;;
  esac
  return 1
}

# need PROGRAM...: each must be installed (a name on PATH, or a path: an executable
# or a directory).
need() {
  local p
  for p in "$@"; do
    if ! command -v "$p" >/dev/null 2>&1 && [ ! -x "$p" ]; then
      if required; then
        echo "FAIL: $p is not installed, and CI=${CI:-} GALLEON_REQUIRE_PROGRAMS=${GALLEON_REQUIRE_PROGRAMS:-} require it (.ci/run installs it)"
        exit 1
      fi
      echo "SKIP: $p is not installed (CI=true or GALLEON_REQUIRE_PROGRAMS=1 make this a failure)"
      exit 77
    fi
  done
}

# Every case compares outputs with these.
need awk cmp diff date wc head

# compare NAME CMD...: run CMD without and with the preload; stdout and status must
# match; stdout must not be empty.
compare() {
  local name=$1; shift
  local t0 t1 t2
  t0=$(date +%s.%N)
  "$@" >"$name.plain.out" 2>"$name.plain.err"
  local st_plain=$?
  t1=$(date +%s.%N)
  LD_PRELOAD="$lib" "$@" >"$name.galleon.out" 2>"$name.galleon.err"
  local st_galleon=$?
  t2=$(date +%s.%N)
  printf '%s: status %d / %d, %s / %s bytes of stdout, %.2f s / %.2f s\n' "$name" \
    "$st_plain" "$st_galleon" "$(wc -c <"$name.plain.out")" "$(wc -c <"$name.galleon.out")" \
    "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $t2 - $t1}")"
  local ok=1
  if [ "$st_plain" -ne "$st_galleon" ]; then
    echo "FAIL: $name: exit status $st_plain without galleon, $st_galleon with it"; ok=0
  fi
  if [ "$st_plain" -ne 0 ]; then
    echo "FAIL: $name: the reference run itself failed (status $st_plain)"; ok=0
  fi
  if [ ! -s "$name.plain.out" ]; then
    echo "FAIL: $name: no output to compare"; ok=0
  fi
  if ! cmp -s "$name.plain.out" "$name.galleon.out"; then
    echo "FAIL: $name: stdout differs:"; diff "$name.plain.out" "$name.galleon.out" | head -20; ok=0
  fi
  if [ $ok = 0 ]; then
    echo "--- stderr without galleon:"; head -c 2000 "$name.plain.err"
    echo "--- stderr with galleon:"; head -c 2000 "$name.galleon.err"
    FAILED=1
  fi
}
FAILED=0

PY=/usr/bin/python3
python_script() {
  cat >work.py <<'EOF'
import json, threading, hashlib, random, sys
random.seed(1234)
# dicts, lists, strings
d = {}
for i in range(200000):
    d["key%d" % i] = [i, str(i) * (i % 7), {"x": i * 1.5}]
lst = [s.upper() for s in ("abc%dxyz" % i for i in range(200000))]
big = "".join(lst[::3])
h = hashlib.sha256(big.encode()).hexdigest()
del d["key17"]
print(len(d), len(lst), len(big), h)
# json round-trip
obj = {"list": [random.random() for _ in range(50000)],
       "nested": [{"id": i, "tags": ["t%d" % j for j in range(i % 10)]} for i in range(20000)]}
s = json.dumps(obj, sort_keys=True)
back = json.loads(s)
assert back == obj
print(len(s), hashlib.md5(s.encode()).hexdigest())
# threads building and dropping objects concurrently
results = [None] * 8
def work(k):
    acc = []
    for i in range(30000):
        acc.append(("%d-%d" % (k, i)) * (i % 5))
        if i % 3 == 0:
            acc.pop(0)
    results[k] = sum(len(x) for x in acc)
ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(results)
words = sorted(set(big[i:i+5] for i in range(0, len(big) - 5, 7)))
print(len(words), words[:3], words[-3:])
EOF
}

case "$case_name" in
  python)
    need "$PY"
    python_script
    compare python env PYTHONHASHSEED=0 "$PY" work.py
    ;;
  python_malloc)
    need "$PY"
    python_script
    compare python_malloc env PYTHONHASHSEED=0 PYTHONMALLOC=malloc "$PY" work.py
    ;;
  sqlite)
    need sqlite3 awk
    awk 'BEGIN {
      print "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);";
      print "BEGIN;";
      for (i = 0; i < 20000; i++)
        printf "INSERT INTO t(grp, name, val) VALUES(%d, '\''name-%d-%s'\'', %d.25);\n", i % 97, i, substr("abcdefghijklmnopqrstuvwxyz", 1 + i % 26), i * 3;
      print "COMMIT;";
      print "CREATE INDEX t_grp ON t(grp);";
      print "CREATE INDEX t_name ON t(name);";
      print "SELECT grp, count(*), sum(val), max(name) FROM t GROUP BY grp ORDER BY grp;";
      print "SELECT count(*) FROM t WHERE name LIKE '\''name-1%'\'';";
      print "UPDATE t SET name = name || name WHERE grp % 3 = 0;";
      print "DELETE FROM t WHERE grp % 5 = 0;";
      print "VACUUM;";
      print "SELECT count(*), sum(length(name)) FROM t;";
    }' >script.sql
    compare sqlite_mem sqlite3 :memory: ".read script.sql"
    compare sqlite_file sh -c 'rm -f db.sqlite; sqlite3 db.sqlite ".read script.sql"'
    ;;
  perl)
    need perl
    compare perl perl -e '
      my %h; my @w;
      for my $i (1..200000) { my $k = "k" . ($i * 7919 % 100003); $h{$k} .= chr(97 + $i % 26); }
      for my $k (keys %h) { push @w, $k if $h{$k} =~ /(ab|cd|x.z)/; }
      my @s = sort { length($h{$a}) <=> length($h{$b}) or $a cmp $b } @w;
      my $joined = join(",", map { "$_=$h{$_}" } @s[0..99]);
      (my $t = $joined) =~ s/([aeiou])/uc $1/ge;
      my @parts = split /,/, $t;
      printf "%d %d %d %s\n", scalar(keys %h), scalar(@w), scalar(@parts), substr($t, 0, 200);
      my $big = "x" x 5_000_000; $big =~ s/x{1000}/y/g; print length($big), "\n";'
    ;;
  gcc)
    need gcc nm objdump md5sum tail
    # 1200 functions (3000 take over 20 s per compile on a 2-core machine).
    awk -v N=1200 'BEGIN {
      print "struct s { int a[16]; double d; const char *name; };";
      for (i = 0; i < N; i++) {
        printf "int f%d(struct s *p, int n) {\n  int acc = n * %d + p->a[%d];\n", i, i % 13 + 1, i % 16;
        printf "  switch (n %% 4) { case 0: acc += %d; break; case 1: acc -= p->a[%d]; break; case 2: p->name = \"f%d\"; break; default: p->d += acc; }\n", i, (i * 7) % 16, i;
        if (i > 0 && i % 10 != 0) printf "  if (n > 1000) acc += f%d(p, n / 2);\n", i - 1;
        printf "  return acc;\n}\n";
      }
    }' >big.c
    compare gcc_build sh -c 'gcc -O2 -c big.c -o big.o && nm big.o && objdump -d --no-show-raw-insn big.o | tail -n +4 | md5sum'
    ;;
  coreutils)
    need sort ls awk env /usr/include
    awk 'BEGIN { for (i = 0; i < 300000; i++) printf "%08d line %d %s\n", (i * 7919) % 1000003, i, substr("zyxwvutsrqponmlkjihgfedcba", 1 + i % 26); }' >lines.txt
    compare sort env LC_ALL=C sort -k3,3 -k1,1n lines.txt
    compare sort_unique env LC_ALL=C sort -u -r lines.txt
    compare ls env LC_ALL=C ls -laR /usr/include
    ;;
  preload_active)
    need "$PY"
    code='import ctypes
lib = ctypes.CDLL(None)
lib.malloc.restype = ctypes.c_void_p
lib.malloc.argtypes = [ctypes.c_size_t]
lib.free.argtypes = [ctypes.c_void_p]
p = lib.malloc(100)
try:
    owns = lib.galleon_owns
except AttributeError:
    print("no galleon_owns"); raise SystemExit(0)
owns.argtypes = [ctypes.c_void_p]
print("galleon_owns =", owns(p))
lib.free(p)'
    out_plain=$(PYTHONMALLOC=malloc "$PY" -c "$code" 2>&1)
    out_galleon=$(LD_PRELOAD="$lib" PYTHONMALLOC=malloc "$PY" -c "$code" 2>&1)
    echo "without preload: $out_plain"
    echo "with preload:    $out_galleon"
    [ "$out_plain" = "no galleon_owns" ] || { echo "FAIL: galleon_owns visible without the preload"; FAILED=1; }
    [ "$out_galleon" = "galleon_owns = 1" ] || { echo "FAIL: malloc under LD_PRELOAD is not galleon's"; FAILED=1; }
    ;;
  *)
    echo "unknown case $case_name"; exit 2 ;;
esac

if [ "$FAILED" = 0 ]; then echo "PASS: $case_name"; fi
exit $FAILED
