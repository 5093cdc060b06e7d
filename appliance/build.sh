#!/usr/bin/env bash
# Builds the simulated VCSA 5.5 appliance image (appliance/Dockerfile) unless an image with the
# same content hash exists, and prints its tag on stdout.
#
#   appliance/build.sh [--base IMAGE] [--local-base] [--force]
#
# Tags: vcsa-backup-sim-appliance:<content hash> and vcsa-backup-sim-appliance:latest. The hash
# covers appliance/Dockerfile, appliance/rootfs, src/sim/scripts and the base image's id, so an
# edit to any of them builds a new image and nothing else does.
#
# The base is debian:bookworm-slim. Without a registry, --local-base makes that image from
# Debian packages when it is missing (debootstrap --variant=minbase, then docker import).
# The Dockerfile's apt-get needs a Debian mirror: the build runs with --network host.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${VCSA_SIM_IMAGE:-vcsa-backup-sim-appliance}
base=debian:bookworm-slim
local_base=''
force=''
while (($#)); do
  case $1 in
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --local-base) local_base=1; shift ;;
    --force) force=1; shift ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "appliance/build.sh: $*" >&2; }

# No BuildKit without the buildx plugin (Debian's docker.io): use the classic builder.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

# One build at a time on this machine (parallel test files share the result).
exec 9>"${TMPDIR:-/tmp}/vcsa-backup-sim-appliance.build.lock"
flock -w 900 9 || { say "another build held the lock for 15 minutes"; exit 1; }

debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    uri=$(sed -n -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\2/p' "$f" | head -n1)
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && !/Suites:[^\n]*bookworm-/ {if (match($0, /URIs: *[^ \n]+/)) {print substr($0, RSTART+6, RLENGTH-6); exit}}' "$f" | tr -d ' ')
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  echo http://deb.debian.org/debian
}

make_local_base() {
  command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
  local rootfs mirror
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/vcsa-sim-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  say "making $base from debootstrap --variant=minbase bookworm ($mirror)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc "$rootfs"/usr/share/man
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
}

if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [[ -n $local_base ]]; then
    make_local_base
  elif ! docker pull "$base" >&2; then
    say "cannot pull $base; with no registry, run with --local-base to make it from Debian packages"
    exit 1
  fi
fi
base_id=$(docker image inspect -f '{{.Id}}' "$base")

hash=$(
  cd "$repo"
  echo "base $base_id"
  find appliance/Dockerfile appliance/rootfs src/sim/scripts -type f | LC_ALL=C sort | while IFS= read -r f; do
    x=-; [[ -x $f ]] && x=x
    echo "$f $x $(sha256sum <"$f" | cut -c1-64)"
  done
)
hash=$(printf '%s\n' "$hash" | sha256sum | cut -c1-16)
tag=$image:$hash

if [[ -z $force ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$image:latest"
  echo "$tag"
  exit 0
fi
say "building $tag from $base"
docker build --network host --build-arg "BASE=$base" --label "vcsa-backup.content-hash=$hash" \
  -f "$repo/appliance/Dockerfile" -t "$tag" -t "$image:latest" "$repo" >&2
# Older content-hash builds are cache that no longer matches the sources; an image a container
# still uses stays.
for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$image"); do
  if [[ $old =~ :[0-9a-f]{16}$ && $old != "$tag" ]]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
done
echo "$tag"
