#!/usr/bin/env bash
# tools/fuzz.sh TARGET SECONDS — run a libFuzzer target for a bounded time.
#
#   tools/fuzz.sh bbolt 60     # the bbolt reader (tests/fuzz/fuzz_bbolt.c) for 60 s
#   tools/fuzz.sh auth 60      # request decoding + auth checks (tests/fuzz/fuzz_auth.c)
#
# Builds with clang in build-fuzz/ (tests/fuzz/meson.build adds the libFuzzer binary
# when the compiler is clang), seeds the corpus from the writer (fuzz-TARGET-replay
# --write-seeds), fuzzes, and leaves any crash input in build-fuzz/fuzz-TARGET/;
# replay one with build-fuzz/tests/fuzz/fuzz-TARGET-replay FILE. Not part of `meson test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${1:?usage: tools/fuzz.sh TARGET SECONDS}"
secs="${2:-60}"
build=build-fuzz
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" --buildtype=debugoptimized -Db_lundef=false >/dev/null
fi
ninja -C "$build" "tests/fuzz/fuzz-$target" "tests/fuzz/fuzz-$target-replay" >/dev/null
work="$build/fuzz-$target"
mkdir -p "$work/corpus"
"$build/tests/fuzz/fuzz-$target-replay" --write-seeds "$work/corpus"
cd "$work"
"../tests/fuzz/fuzz-$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus
