#!/bin/bash
# `service-control` of a simulated VCSA 6.x/7.0: --start, --stop and --status of the
# appliance's services with the output shapes of the real one (vMon's "Performing stop
# operation on service vpxd...", the "Running:" / "Stopped:" sections of --status). The
# daemons themselves are managed by the same script as on the simulated 5.5 (SIM_DAEMON_CTL,
# which also writes the audit log); vmware-vpostgres is the appliance's PostgreSQL server:
# its status is whether the server answers, and it can be stopped and started only where the
# appliance owns its server (SIM_VPOSTGRES_CTL, the container image).
set -u
. @SIM_ENV@

daemon_ctl=${SIM_DAEMON_CTL:-$SIM_ROOT/usr/lib/vcsa-sim/service}
read -r -a daemons <<<"${SIM_SERVICES:-vmware-vpxd}"
all=(vmware-vpostgres "${daemons[@]}")

usage() {
  cat >&2 <<'USAGE'
usage: service-control --start|--stop|--status [--all | SERVICE...]
       service-control --list
USAGE
  exit 1
}

fail() {
  echo "Service-control failed. Error: $*" >&2
  exit 1
}

# vMon's name for a service in its messages: vpxd for vmware-vpxd.
short() {
  if [[ $1 == vmware-vpostgres ]]; then printf '%s' "$1"; else printf '%s' "${1#vmware-}"; fi
}

now_ms() {
  local t=${EPOCHREALTIME//[.,]/}
  printf '%s' "${t:0:${#t}-3}"
}

audit_vpostgres() {
  local line
  printf -v line '{"ts": %s, "appliance": "%s", "service": "vmware-vpostgres", "state": "%s"}\n' "$(now_ms)" "$SIM_NAME" "$1"
  printf '%s' "$line" >>"$SIM_AUDIT"
}

vpostgres_running() {
  "$SIM_PG_BIN/pg_isready" -q -h "$SIM_PGHOST" -p "$SIM_PGPORT" >/dev/null 2>&1
}

is_running() {
  if [[ $1 == vmware-vpostgres ]]; then vpostgres_running; else "$daemon_ctl" "$1" status >/dev/null 2>&1; fi
}

# operate start|stop SERVICE: one service, the daemon manager's errors on stderr.
operate() {
  local op=$1 svc=$2 out
  echo "Performing $op operation on service $(short "$svc")..."
  if [[ $svc == vmware-vpostgres ]]; then
    [[ -n ${SIM_VPOSTGRES_CTL:-} ]] ||
      fail "vmware-vpostgres of this simulated appliance is a shared PostgreSQL server; it cannot be ${op/%p/pp}ed here"
    if [[ $op == stop ]] && ! vpostgres_running; then
      echo "Successfully stopped service $(short "$svc")"
      return 0
    fi
    if [[ $op == start ]] && vpostgres_running; then
      echo "Successfully started service $(short "$svc")"
      return 0
    fi
    if [[ $op == stop ]]; then
      # The services that use the database go first, as vMon stops dependants.
      local d
      for d in "${daemons[@]}"; do
        if is_running "$d"; then operate stop "$d"; fi
      done
      echo "Performing $op operation on service $(short "$svc")..."
    fi
    # shellcheck disable=SC2086 # the control command is a command line (e.g. pg_ctlcluster 15 main)
    if ! out=$($SIM_VPOSTGRES_CTL "$op" 2>&1); then
      fail "Failed to ${op} vmware-vpostgres: $out"
    fi
    audit_vpostgres "$([[ $op == stop ]] && echo stopped || echo running)"
  elif ! out=$("$daemon_ctl" "$svc" "$op" 2>&1); then
    fail "Failed to ${op} services. Service $(short "$svc"): $out"
  fi
  echo "Successfully ${op/%p/pp}ed service $(short "$svc")"
}

known() {
  local s
  for s in "${all[@]}"; do [[ $s == "$1" ]] && return 0; done
  return 1
}

op=${1:-}
[[ -z $op ]] && usage
shift
selected=()
if [[ ${1:-} == --all ]]; then
  (($# == 1)) || usage
  # A shared server is not this appliance's to stop.
  for svc in "${all[@]}"; do
    [[ $svc == vmware-vpostgres && -z ${SIM_VPOSTGRES_CTL:-} ]] || selected+=("$svc")
  done
else
  for svc in "$@"; do
    [[ $svc == -* ]] && usage
    known "$svc" || fail "Invalid service name(s): $svc (this appliance has ${all[*]})"
    selected+=("$svc")
  done
fi

case $op in
  --list)
    (($# == 0)) || usage
    for svc in "${all[@]}"; do echo "$svc ($(short "$svc"))"; done
    ;;
  --status)
    ((${#selected[@]})) || selected=("${all[@]}")
    running=()
    stopped=()
    for svc in "${selected[@]}"; do
      if is_running "$svc"; then running+=("$svc"); else stopped+=("$svc"); fi
    done
    if ((${#running[@]})); then printf 'Running:\n %s\n' "${running[*]}"; fi
    if ((${#stopped[@]})); then printf 'Stopped:\n %s\n' "${stopped[*]}"; fi
    ;;
  --stop | --start)
    ((${#selected[@]})) || usage
    action=${op#--}
    order=("${selected[@]}")
    if [[ $action == stop ]]; then
      # The database goes last on stop and first on start.
      order=()
      for svc in "${selected[@]}"; do [[ $svc != vmware-vpostgres ]] && order+=("$svc"); done
      for svc in "${selected[@]}"; do [[ $svc == vmware-vpostgres ]] && order+=("$svc"); done
    else
      order=()
      for svc in "${selected[@]}"; do [[ $svc == vmware-vpostgres ]] && order+=("$svc"); done
      for svc in "${selected[@]}"; do [[ $svc != vmware-vpostgres ]] && order+=("$svc"); done
    fi
    echo "Operation not cancellable. Please wait for it to finish..."
    for svc in "${order[@]}"; do operate "$action" "$svc"; done
    ;;
  *) usage ;;
esac
