#!/bin/bash
# Inventory Service restore.sh of a simulated appliance: `restore.sh -backup FILE` replaces the
# inventory database with the archive, in one transaction (all or nothing).
set -u
. @SIM_ENV@
if [[ ${1:-} != -backup || -z ${2:-} || $# -ne 2 ]]; then
  echo "usage: restore.sh -backup FILE" >&2
  exit 1
fi
file=$2
if [[ ! -r $file ]]; then
  echo "restore.sh: cannot read $file" >&2
  exit 1
fi
if ! PGHOST=$SIM_PGHOST PGPORT=$SIM_PGPORT "$SIM_PG_BIN/pg_restore" -U "$SIM_DB_USER" --clean --if-exists --single-transaction --exit-on-error -d "$SIM_INVDB" "$file"; then
  echo "restore.sh: restore of $file into the inventory database $SIM_INVDB failed; nothing was changed" >&2
  exit 1
fi
echo "Inventory Service database restored from $file"
