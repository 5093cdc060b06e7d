#!/bin/bash
# Inventory Service backup.sh of a simulated appliance: `backup.sh -file FILE` writes the
# inventory database to FILE (a pg_dump custom-format archive).
set -u
. @SIM_ENV@
if [[ ${1:-} != -file || -z ${2:-} || $# -ne 2 ]]; then
  echo "usage: backup.sh -file FILE" >&2
  exit 1
fi
file=$2
if ! PGHOST=$SIM_PGHOST PGPORT=$SIM_PGPORT "$SIM_PG_BIN/pg_dump" -U "$SIM_DB_USER" -Fc -f "$file" "$SIM_INVDB"; then
  echo "backup.sh: backup of the inventory database $SIM_INVDB to $file failed" >&2
  exit 1
fi
echo "Backup of the Inventory Service database written to $file"
