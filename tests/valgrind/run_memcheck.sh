#!/usr/bin/env bash
# run_memcheck.sh PROGRAM: each case of memcheck_bugs under valgrind's memcheck
# must produce the report that names its bug (and the clean cases none).
set -u
prog=$1
if ! command -v valgrind >/dev/null; then
  echo "valgrind is not installed"; exit 1
fi
fails=0
check() { # case, expected pattern (grep -E), description
  local c=$1 want=$2 what=$3 out
  out=$(valgrind --tool=memcheck --soname-synonyms=somalloc=nouserintercepts --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=99 "$prog" "$c" 2>&1)
  if grep -Eq "$want" <<<"$out"; then
    echo "ok   $c: $what"
  else
    echo "FAIL $c: expected /$want/ ($what); memcheck said:"; sed 's/^/    /' <<<"$out" | tail -25
    fails=$((fails + 1))
  fi
}
check clean "ERROR SUMMARY: 0 errors" "valid use of every kind is clean"
check calloc-defined "ERROR SUMMARY: 0 errors" "calloc memory is defined"
check overflow "Invalid write of size 1" "one byte past a 64-byte block"
check overflow-slack "Invalid write of size 1" "one byte past a 60-byte request inside its block"
check overflow-large "Invalid write of size 1" "one byte past a large block"
check use-after-free "Invalid read of size 1.*|free'd" "reading a freed block"
check uninitialised "Conditional jump or move depends on uninitialised value" "branching on never-written bytes"
check leak "definitely lost: 1,234 bytes in 1 blocks" "a lost block"
check double-free "Invalid free\(\)" "the second free of a block"
check double-free "galleon: error: double free of" "Galleon's own report still follows"
check realloc-moves "Invalid read of size 1" "the old pointer after realloc"
echo "$((11 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
