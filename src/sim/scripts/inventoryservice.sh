#!/bin/bash
# Simulated vmware-inventoryservice: mirrors vpxd's progress (the VCDB's newest event) into the
# inventory database every tick, and once more when stopped. So the two databases agree only
# when vpxd was stopped before the inventory service, as the backup procedure does.
set -u
SERVICE_NAME=vmware-inventoryservice
. "${BASH_SOURCE[0]%/*}/daemon-lib.sh"

last=''
sync_once() {
  q VC "SELECT coalesce(max(seq), 0) FROM vpx_event;" || return 1
  local seq=$REPLY
  [[ $seq =~ ^[0-9]+$ ]] || return 1
  if [[ $seq != "$last" ]]; then
    q INV "UPDATE inv_progress SET seq = $seq, synced_at = now() RETURNING seq;" || return 1
    last=$seq
  fi
}

open_db VC "$SIM_VCDB"
open_db INV "$SIM_INVDB"
if ! q INV "SET synchronous_commit = off; SELECT 1;" || ! sync_once; then
  log "cannot reach the VCDB $SIM_VCDB or the inventory database $SIM_INVDB"
  exit 1
fi
log "started at event $last"
mark_ready
while keep_running; do
  if ! sync_once; then
    log "lost a database; exiting"
    exit 1
  fi
  tick
done
if [[ -n $stopping ]] && ! sync_once; then
  log "final sync failed"
  exit 1
fi
log "stopped at event $last"
