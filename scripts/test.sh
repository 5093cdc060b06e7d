#!/usr/bin/env bash
# The whole suite: typecheck, lint, then every test file against real services.
# Test files run in parallel child processes (node's test runner, TEST_CONCURRENCY at a time,
# 4 by default: most of a file's time is spent waiting on services and child processes, not
# on CPU). Each file starts the private servers it needs (S3, sshd, dockerd) and uses its own
# Redis queue prefix and PostgreSQL databases. Typecheck and lint run beside the tests and
# their verdict is printed after them; any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-setup.sh
# The AWS SDK prints a Node 20 end-of-support notice in every process; the README states it once.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

checks=$(mktemp -d)
trap 'rm -rf "$checks"' EXIT
( rc=0
  npx tsc --noEmit >"$checks/typecheck.log" 2>&1 || rc=1
  echo "$rc" >"$checks/typecheck.rc"
  rc=0
  npx eslint . >"$checks/lint.log" 2>&1 || rc=1
  echo "$rc" >"$checks/lint.rc" ) &
checks_pid=$!

# The longest files first (measured on CI), so that none starts last and runs alone at the end.
slow_first=(
  test/soak/soak.test.ts
  test/runtime/node24.test.ts
  test/docker/compose-stack.test.ts
  test/native/mixed-fleet.test.ts
  test/restore/cli.test.ts
  test/fleet/s3-outage.test.ts
  test/fleet/worker-death.test.ts
  test/fleet/redis-sentinel.test.ts
  test/crypto/rekey.test.ts
  test/docker/appliance.test.ts
  test/fleet/spool-and-slots.test.ts
  test/fleet/fleet-run.test.ts
  test/backup/large-vcdb.test.ts
  test/crypto/queued-encrypted.test.ts
  test/fleet/redis-restart.test.ts
  test/fleet/redis-tls-acl.test.ts
)
mapfile -t all < <(find test -name '*.test.ts' | sort)
files=()
for f in "${slow_first[@]}"; do [ -f "$f" ] && files+=("$f"); done
for f in "${all[@]}"; do [[ " ${slow_first[*]} " == *" $f "* ]] || files+=("$f"); done

echo "== tests (typecheck and lint run beside them)"
tests_rc=0
node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-4}" --test-timeout=600000 "${files[@]}" || tests_rc=$?

wait "$checks_pid" || true
status=$tests_rc
for check in typecheck lint; do
  echo "== $check"
  cat "$checks/$check.log"
  if [ "$(cat "$checks/$check.rc" 2>/dev/null || echo 1)" != 0 ]; then echo "== $check FAILED"; status=1; else echo "== $check ok"; fi
done
exit "$status"
