#!/bin/bash
# Runs once at image build: puts the simulator's scripts (src/sim/scripts, copied to
# /usr/lib/vcsa-sim/src) at the real paths of both appliance generations: VCSA 5.5 (`service`,
# vPostgres 1.0, the Inventory Service scripts) and 6.x/7.0 (`service-control`, vPostgres
# `current`). VCSA_SIM_PROFILE picks one at container start. They are the same scripts that
# src/sim/appliance.ts installs under a directory ROOT; here ROOT is empty ("/").
set -euo pipefail
src=/usr/lib/vcsa-sim/src
env_file=/etc/vcsa-sim/appliance.env

# install_script SRC DEST MODE [TOOL]: the scripts' only placeholders are @SIM_ENV@ and @TOOL@.
install_script() {
  local from=$1 to=$2 mode=$3 tool=${4:-}
  mkdir -p "${to%/*}"
  sed -e "s|@SIM_ENV@|'$env_file'|g" -e "s|@TOOL@|$tool|g" "$src/$from" >"$to"
  chmod "$mode" "$to"
  if grep -q '@[A-Z_]*@' "$to"; then
    echo "install.sh: $to still has a placeholder: $(grep -o '@[A-Z_]*@' "$to" | sort -u | tr '\n' ' ')" >&2
    exit 1
  fi
}

# Debian's own `service` (init-system-helpers) would look for /etc/init.d scripts.
if [ -e /usr/sbin/service ] && ! dpkg-divert --list /usr/sbin/service | grep -q .; then
  dpkg-divert --local --rename --add /usr/sbin/service >/dev/null
fi
install_script service.sh /usr/sbin/service 0755
# The daemon manager behind service-control (6.x), the same script.
install_script service.sh /usr/lib/vcsa-sim/service 0755
install_script service-control.sh /usr/bin/service-control 0755
install_script daemon-lib.sh /usr/lib/vcsa-sim/daemon-lib.sh 0644
install_script vpxd.sh /usr/lib/vcsa-sim/vpxd.sh 0755
install_script inventoryservice.sh /usr/lib/vcsa-sim/inventoryservice.sh 0755
install_script inventory-backup.sh /usr/lib/vmware-vpx/inventoryservice/scripts/backup.sh 0755
install_script inventory-restore.sh /usr/lib/vmware-vpx/inventoryservice/scripts/restore.sh 0755
for tool in pg_dump psql pg_restore; do
  install_script pg-wrapper.sh "/opt/vmware/vpostgres/1.0/bin/$tool" 0755 "$tool"
  install_script pg-wrapper.sh "/opt/vmware/vpostgres/current/bin/$tool" 0755 "$tool"
done

# The appliance's own PostgreSQL: Unix socket only (no TCP port to collide with under
# --network host), trust for local connections as in the host-side simulator.
conf=/etc/postgresql/15/main
cat >"$conf/conf.d/vcsa-sim.conf" <<'CONF'
# The cluster was created during the image build, which may have seen 5432 taken on the
# build host (--network host) and picked another port: the socket name depends on it.
port = 5432
listen_addresses = ''
unix_socket_directories = '/var/run/postgresql'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 50
CONF
printf 'local all all trust\n' >"$conf/pg_hba.conf"

mkdir -p /etc/vcsa-sim /var/log/vcsa-sim /root/.ssh /run/sshd /storage/db
chmod 700 /root/.ssh
