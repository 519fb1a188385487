#!/usr/bin/env bash
# tools/test.sh — install what is missing, build with ASan+UBSan in build-test/, run every
# test (unit, node, integration against etcdctl / python3-etcd3 / Debian's etcd 3.4), and
# end with one line "N passed, N failed". Exits non-zero if anything failed.
#
#   tools/test.sh                          # everything
#   tools/test.sh --suite integration      # extra arguments go to `meson test`
#   STORE_IMPL=etcd tools/test.sh --suite integration   # the integration tests against etcd
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=tools/deps.sh
source tools/deps.sh
bollard_install_deps build test

build=build-test
sanitize=(-Db_sanitize=address,undefined -Db_lundef=false)
if [ ! -f "$build/build.ninja" ]; then
  setup=(meson setup "$build" "${sanitize[@]}" --buildtype=debugoptimized)
else
  setup=(meson configure "$build" "${sanitize[@]}")
fi
if ! "${setup[@]}"; then
  echo "meson setup failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# Sanitizers: stop at the first error; leaks are errors. tests/lsan.supp may name
# third-party frames only (never Bollard's own code).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:print_summary=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if [ -f tests/lsan.supp ]; then
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi

if ! meson compile -C "$build"; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
rm -f "$build/meson-logs/testlog.json"
status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?

# One summary line from meson's own record of what ran.
/usr/bin/python3 - "$build/meson-logs/testlog.json" "$status" <<'PY'
import json, sys
path, status = sys.argv[1], int(sys.argv[2])
passed = failed = 0
try:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)["result"]
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            else:       # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, and SKIP: nothing may silently not run
                failed += 1
                print("failed: %s (%s)" % (json.loads(line)["name"], r))
except OSError as e:
    print("no test log (%s)" % e)
if status != 0 and failed == 0:
    failed = 1                         # meson itself failed (build error, no tests run)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
