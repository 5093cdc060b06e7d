#!/usr/bin/env bash
# Prepares this machine for the tests (you are root; it says what it installs):
#   test-setup.sh packages  the services and Debian packages the tests talk to
#   test-setup.sh images    the Docker engine, Node.js 24 and the container images
#   test-setup.sh           both, in that order
# scripts/test.sh runs `packages` first and `images` beside the first test files: building the
# images is minutes of waiting on debootstrap, apt and npm on a fresh machine, and a test file
# that needs an image waits on the same build lock (test/support/dockerd.ts, images.ts).
set -euo pipefail
stage=${1:-all}
case $stage in
  all | packages | images) ;;
  *) echo "test-setup: unknown stage '$stage'; use packages, images or nothing (both)" >&2; exit 2 ;;
esac

packages() {
  # On this project's machines Redis and PostgreSQL are started before the session; this
  # starts them again if they are not.
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "test-setup: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "test-setup: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
  # OpenSSH (the ssh executor's tests run a private sshd), Docker (the docker executor's tests and
  # containerised appliances) and debootstrap (builds the test image: no registry is reachable).
  local missing=()
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  # Headless Chromium for the dashboard's browser test (driven by playwright-core).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # OpenStack Swift's s3api: a second S3 server for the storage and prune tests, one that lists
  # multipart uploads (fauxqs cannot); run by test/support/swift-s3.py with Debian's python3.
  /usr/bin/python3 -c 'import swift' >/dev/null 2>&1 || missing+=(python3-swift)
  # Compose, to validate docker-compose.yml (test/docker/compose.test.ts).
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
  # Debian's age (and age-keygen): the encryption tests open what we store with it (test/crypto).
  command -v age >/dev/null 2>&1 || missing+=(age)
  # promtool (Debian's prometheus package): checks and unit-tests deploy/prometheus/alerts.yml.
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "test-setup: installing ${missing[*]} (apt-get update && apt-get install -y ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

images() {
  # Starts dockerd if no engine answers and builds the test base image once (about a minute the
  # first time), so that test files running in parallel find both ready.
  node --import tsx test/support/dockerd.ts || echo "test-setup: WARNING: Docker engine or test image not ready; the docker tests will say why"
  # Node.js 24 from the npm registry's `node` package (test/support/node24.ts), cached by version:
  # the vcsa-backup image's runtime, and test/runtime/node24.test.ts runs the demo and a few test
  # files on it. About 50 MB the first time, one `npm view` after.
  node --import tsx test/support/node24.ts >/dev/null || echo "test-setup: WARNING: no Node.js 24; test/runtime/node24.test.ts will say why"
  # The simulated appliance image, the vcsa-backup image (on the Node 24 stand-in) and Redis from
  # Debian's package for docker-compose.local.yml (test/support/images.ts), cached by content
  # hash: about 2.5 minutes the first time, nothing after, a few seconds when sources changed.
  node --import tsx test/support/images.ts || echo "test-setup: WARNING: container images not built; the docker tests will say why"
}

cd "$(dirname "$0")/.."
[ "$stage" = images ] || packages
[ "$stage" = packages ] || images
