# Shared by the simulated daemons: one long-lived psql per database, driven line by line
# through FIFOs (one round trip per statement), and a sleep that forks nothing.
. @SIM_ENV@

trap '' PIPE HUP
stopping=''
trap 'stopping=1' TERM INT

run_dir=$SIM_ROOT/var/run
service_name=${SERVICE_NAME:?}
fifo_base=$run_dir/$service_name.$$
declare -a psql_pids=()

log() { printf '%s %s: %s\n' "$(date -u +%FT%TZ)" "$service_name" "$*"; }

cleanup() {
  local fd
  for fd in "${open_fds[@]}"; do exec {fd}>&-; done
  ((${#psql_pids[@]})) && wait "${psql_pids[@]}" 2>/dev/null
  rm -f "$fifo_base".* "$run_dir/$service_name.ready"
}
declare -a open_fds=()
trap cleanup EXIT

echo $$ >"$run_dir/$service_name.pid.$$" && mv -f "$run_dir/$service_name.pid.$$" "$run_dir/$service_name.pid"

# The tick sleeps on this FIFO. It stays in place (cleanup removes it) so that `service stop`
# can wake the daemon at once: bash runs the TERM trap only after `read -t` returns, so
# without a wake-up a stop would wait out the rest of the tick.
mkfifo "$fifo_base.sleep"
exec {sleep_fd}<>"$fifo_base.sleep"
open_fds+=("$sleep_fd")

# open_db NAME DATABASE: sets NAME_W (write SQL) and NAME_R (read one result line).
open_db() {
  local name=$1 db=$2 w r
  mkfifo "$fifo_base.$name.req" "$fifo_base.$name.resp"
  PGHOST=$SIM_PGHOST PGPORT=$SIM_PGPORT PGAPPNAME="vcsa-sim $SIM_NAME $service_name" \
    "$SIM_PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -U "$SIM_DB_USER" -d "$db" \
    <"$fifo_base.$name.req" >"$fifo_base.$name.resp" &
  psql_pids+=("$!")
  exec {w}>"$fifo_base.$name.req" {r}<"$fifo_base.$name.resp"
  rm -f "$fifo_base.$name.req" "$fifo_base.$name.resp"
  open_fds+=("$w" "$r")
  printf -v "${name}_W" '%s' "$w"
  printf -v "${name}_R" '%s' "$r"
}

# q NAME SQL: runs SQL that returns exactly one value; it lands in REPLY.
q() {
  local -n _w=${1}_W _r=${1}_R
  REPLY=''
  printf '%s\n' "$2" >&"$_w" 2>/dev/null || return 1
  IFS= read -r -t 30 REPLY <&"$_r" || return 1
  [[ -n $REPLY ]]
}

mark_ready() {
  echo $$ >"$run_dir/$service_name.ready.$$" && mv -f "$run_dir/$service_name.ready.$$" "$run_dir/$service_name.ready"
}

# Keep going until stopped, the appliance is destroyed (its directory is gone) or the process
# that owns the simulation is gone: no daemon outlives its appliance.
keep_running() {
  [[ -z $stopping && -d $run_dir ]] || return 1
  [[ -z ${SIM_OWNER_PID:-} ]] || kill -0 "$SIM_OWNER_PID" 2>/dev/null
}

tick() {
  local _
  read -r -t "$SIM_TICK" -u "$sleep_fd" _ 2>/dev/null
  return 0
}
