#!/usr/bin/env bash
# The whole suite: typecheck, lint, then every test file against real services.
# Test files run in parallel child processes (node's test runner, TEST_CONCURRENCY at a time,
# 4 by default: most of a file's time is spent waiting on services and child processes, not
# on CPU). Each file starts the private servers it needs (S3, sshd, dockerd) and uses its own
# Redis queue prefix and PostgreSQL databases. Typecheck and lint run beside the tests and
# their verdict is printed after them; any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-setup.sh packages
# The AWS SDK prints a Node 20 end-of-support notice in every process; the README states it once.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

checks=$(mktemp -d)
trap 'rm -rf "$checks"' EXIT
# The Docker engine, Node.js 24 and the images, beside the first test files (minutes on a fresh
# machine, mostly waiting on debootstrap, apt and npm): a file that needs one waits on its build
# lock. Its output is printed after the tests.
bash scripts/test-setup.sh images >"$checks/images.log" 2>&1 &
images_pid=$!
( rc=0
  npx tsc --noEmit >"$checks/typecheck.log" 2>&1 || rc=1
  echo "$rc" >"$checks/typecheck.rc"
  rc=0
  npx eslint . >"$checks/lint.log" 2>&1 || rc=1
  echo "$rc" >"$checks/lint.rc" ) &
checks_pid=$!

# The longest files first (wall time in the suite on CI), so that none starts last and runs
# alone at the end; those that need a container image from 5th on, when it is likelier built.
slow_first=(
  test/soak/soak.test.ts
  test/backup/large-vcdb.test.ts
  test/restore/cli.test.ts
  test/executors/ssh.test.ts
  test/docker/appliance.test.ts
  test/docker/compose-stack.test.ts
  test/runtime/node24.test.ts
  test/crypto/encrypted-backup.test.ts
  test/crypto/queued-encrypted.test.ts
  test/restore/verify.test.ts
  test/backup/secrets.test.ts
  test/crypto/rekey.test.ts
  test/docker/worker-image.test.ts
  test/restore/swap.test.ts
  test/fleet/worker-death.test.ts
  test/fleet/spool-and-slots.test.ts
  test/restore/restore.test.ts
  test/fleet/fleet-run.test.ts
)
mapfile -t all < <(find test -name '*.test.ts' | sort)
files=()
for f in "${slow_first[@]}"; do [ -f "$f" ] && files+=("$f"); done
for f in "${all[@]}"; do [[ " ${slow_first[*]} " == *" $f "* ]] || files+=("$f"); done

echo "== tests (typecheck and lint run beside them)"
tests_rc=0
node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-4}" --test-timeout=600000 "${files[@]}" || tests_rc=$?

wait "$checks_pid" || true
wait "$images_pid" || true
echo "== images (built beside the tests)"
cat "$checks/images.log"
status=$tests_rc
for check in typecheck lint; do
  echo "== $check"
  cat "$checks/$check.log"
  if [ "$(cat "$checks/$check.rc" 2>/dev/null || echo 1)" != 0 ]; then echo "== $check FAILED"; status=1; else echo "== $check ok"; fi
done
exit "$status"
