#!/bin/bash
# Simulated vmware-vpxd: while running, it keeps writing to the VCDB (one event every tick),
# so a dump taken without stopping it is a moving target.
set -u
SERVICE_NAME=vmware-vpxd
. "${BASH_SOURCE[0]%/*}/daemon-lib.sh"

open_db VC "$SIM_VCDB"
if ! q VC "SET synchronous_commit = off; SELECT coalesce(max(seq), 0) FROM vpx_event;"; then
  log "cannot reach the VCDB $SIM_VCDB"
  exit 1
fi
log "started at event $REPLY"
mark_ready
while keep_running; do
  if ! q VC "INSERT INTO vpx_event (seq, at) SELECT coalesce(max(seq), 0) + 1, now() FROM vpx_event RETURNING seq;"; then
    log "lost the VCDB; exiting"
    exit 1
  fi
  tick
done
log "stopped at event $REPLY"
