#!/bin/bash
# vPostgres client of a simulated appliance: the real PostgreSQL binary, pointed at the server
# that holds this appliance's databases. With SIM_VPG_VERSION (e.g. 9.4.26) it answers
# --version as that VMware Postgres release does, and a pg_dump older than 9.5 refuses
# --snapshot as the real one would (the option came with 9.5).
. @SIM_ENV@
export PGHOST=$SIM_PGHOST PGPORT=$SIM_PGPORT
tool=@TOOL@
if [[ -n ${SIM_VPG_VERSION:-} ]]; then
  for arg in "$@"; do
    if [[ $arg == --version || $arg == -V ]]; then
      echo "$tool (PostgreSQL) $SIM_VPG_VERSION (VMware Postgres $SIM_VPG_VERSION.0-sim release)"
      exit 0
    fi
  done
  IFS=. read -r major minor _ <<<"$SIM_VPG_VERSION"
  if [[ $tool == pg_dump ]] && ((major < 9 || (major == 9 && ${minor:-0} < 5))); then
    for arg in "$@"; do
      if [[ $arg == --snapshot* ]]; then
        echo "pg_dump: unrecognized option '$arg'" >&2
        echo "Try \"pg_dump --help\" for more information." >&2
        exit 1
      fi
    done
  fi
fi
exec "$SIM_PG_BIN/$tool" "$@"
