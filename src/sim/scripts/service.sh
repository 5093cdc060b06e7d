#!/bin/bash
# `service` of a simulated VCSA 5.5: start, stop and report vmware-vpxd and
# vmware-inventoryservice like the appliance's init scripts do. The daemons run in their own
# session, so killing whoever ran `service ... start` (a backup worker, its process group)
# leaves them running, as on a real appliance. `status` looks at the process, not at the
# audit log: a daemon killed behind our back reads as stopped.
set -u
. @SIM_ENV@

usage() {
  echo "usage: service vmware-vpxd|vmware-inventoryservice start|stop|restart|status" >&2
  exit 1
}

svc=${1:-}
action=${2:-}
# The appliance's daemons: both on a 5.5, vpxd alone on a 6.x (SIM_SERVICES in appliance.env).
services=" ${SIM_SERVICES:-vmware-vpxd vmware-inventoryservice} "
[[ -z $svc ]] && usage
if [[ $services != *" $svc "* ]]; then
  echo "service: unrecognized service '$svc' (this appliance has${services% })" >&2
  exit 1
fi
case $svc in
  vmware-vpxd) daemon=$SIM_ROOT/usr/lib/vcsa-sim/vpxd.sh ;;
  vmware-inventoryservice) daemon=$SIM_ROOT/usr/lib/vcsa-sim/inventoryservice.sh ;;
esac
case $action in
  start | stop | restart | status) ;;
  '') usage ;;
  *) echo "service: unknown action '$action' for $svc; use start, stop, restart or status" >&2; exit 1 ;;
esac

run_dir=$SIM_ROOT/var/run
pidfile=$run_dir/$svc.pid
readyfile=$run_dir/$svc.ready
logfile=$SIM_ROOT/var/log/$svc.log

# True when PID is alive and really is this appliance's daemon (not a reused pid, not a zombie).
is_daemon() {
  local pid=$1 args
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  mapfile -d '' -t args <"/proc/$pid/cmdline" 2>/dev/null || return 1
  [[ ${args[1]-} == "$daemon" ]]
}

daemon_pid() {
  local pid=''
  [[ -r $pidfile ]] && read -r pid <"$pidfile" 2>/dev/null
  printf '%s' "$pid"
}

is_running() {
  is_daemon "$(daemon_pid)"
}

now_ms() {
  local t=${EPOCHREALTIME//[.,]/}
  printf '%s' "${t:0:${#t}-3}"
}

# One small O_APPEND write per line, so lines from every appliance of the fleet never interleave.
audit() {
  local line
  printf -v line '{"ts": %s, "appliance": "%s", "service": "%s", "state": "%s"}\n' "$(now_ms)" "$SIM_NAME" "$svc" "$1"
  printf '%s' "$line" >>"$SIM_AUDIT"
}

log_tail() {
  [[ -r $logfile ]] && tail -n 5 "$logfile" | tr '\n' ' '
}

do_start() {
  if is_running; then
    echo "$svc is already running"
    return 0
  fi
  rm -f "$pidfile" "$readyfile"
  mkdir -p "$run_dir" "${logfile%/*}"
  # Own session, stdio on the log, no inherited lock: nothing ties the daemon to our caller.
  setsid -f /bin/bash "$daemon" </dev/null >>"$logfile" 2>&1 9>&-
  local deadline=$((SECONDS + SIM_START_TIMEOUT)) pid ready
  while :; do
    pid=$(daemon_pid)
    ready=''
    [[ -r $readyfile ]] && read -r ready <"$readyfile" 2>/dev/null
    if [[ -n $pid && $ready == "$pid" ]] && is_daemon "$pid"; then break; fi
    if [[ -n $pid ]] && ! is_daemon "$pid"; then
      echo "service: $svc exited while starting: $(log_tail)" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      [[ -n $pid ]] && kill -KILL -- "-$pid" 2>/dev/null
      echo "service: $svc did not come up within ${SIM_START_TIMEOUT}s: $(log_tail)" >&2
      return 1
    fi
    sleep 0.05
  done
  audit running
  echo "Starting $svc: ok (pid $pid)"
}

wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while is_daemon "$pid"; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.05
  done
  return 0
}

do_stop() {
  local pid
  pid=$(daemon_pid)
  if ! is_daemon "$pid"; then
    rm -f "$pidfile" "$readyfile"
    echo "$svc is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  # Wake it from its tick (daemon-lib.sh); nonblocking, so a daemon already gone costs nothing.
  printf '\n' | dd of="$run_dir/$svc.$pid.sleep" oflag=nonblock status=none 2>/dev/null || true
  if ! wait_gone "$pid" "$SIM_STOP_GRACE"; then
    echo "service: $svc did not stop within ${SIM_STOP_GRACE}s; killing it" >&2
    kill -KILL -- "-$pid" 2>/dev/null
    if ! wait_gone "$pid" 10; then
      echo "service: $svc (pid $pid) survived SIGKILL" >&2
      return 1
    fi
  fi
  rm -f "$pidfile" "$readyfile"
  audit stopped
  echo "Stopping $svc: ok"
}

if [[ $action == status ]]; then
  if is_running; then
    echo "$svc is running (pid $(daemon_pid))"
    exit 0
  fi
  echo "$svc is stopped"
  exit 3
fi

# Serialise start/stop of one service; the daemon is started without this descriptor.
mkdir -p "$run_dir"
exec 9>"$run_dir/$svc.lock"
if ! flock -w "$((SIM_START_TIMEOUT + SIM_STOP_GRACE + 15))" 9; then
  echo "service: another start/stop of $svc is still running" >&2
  exit 1
fi
case $action in
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop && do_start ;;
esac
