#!/usr/bin/env bash
# The whole suite: typecheck, lint, then every test file against real services.
# Test files run in parallel child processes (node's test runner); each file
# starts the private servers it needs (S3, sshd, dockerd) and uses its own
# Redis queue prefix and PostgreSQL databases.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-setup.sh
# The AWS SDK prints a Node 20 end-of-support notice in every process; the README states it once.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
echo "== typecheck"; npx tsc --noEmit
echo "== lint"; npx eslint .
echo "== tests"
mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout=600000 "${files[@]}"
