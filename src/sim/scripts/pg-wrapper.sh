#!/bin/bash
# vPostgres client of a simulated appliance: the real PostgreSQL binary, pointed at the server
# that holds this appliance's databases.
. @SIM_ENV@
export PGHOST=$SIM_PGHOST PGPORT=$SIM_PGPORT
exec "$SIM_PG_BIN/@TOOL@" "$@"
