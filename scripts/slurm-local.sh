#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for progbench's SLURM tests and local sweeps.
#   scripts/slurm-local.sh up      install (apt) if needed, configure, start munged/slurmctld/slurmd
#   scripts/slurm-local.sh down    stop the daemons
#   scripts/slurm-local.sh status  print sinfo; exit 0 when the node can run jobs
# Runs as root and starts the daemons directly (no systemd). `up` is idempotent: daemons that
# already run with the same configuration are left alone.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
LOG_DIR=/var/log/slurm
UP_TIMEOUT_S=${SLURM_LOCAL_TIMEOUT_S:-60}
HOST=$(hostname -s)

die() {
  echo "slurm-local: $*" >&2
  exit 1
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (it writes /etc/slurm and starts daemons)"
}

ensure_packages() {
  local missing=0 bin
  for bin in munged slurmctld slurmd sinfo sbatch srun scontrol; do
    command -v "$bin" >/dev/null 2>&1 || missing=1
  done
  [ "$missing" -eq 0 ] && return 0
  echo "slurm-local: installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

ensure_hostname() {
  # slurmctld and slurmd find each other (and the node) by the short host name.
  if ! getent hosts "$HOST" >/dev/null; then
    echo "127.0.0.1 $HOST" >>/etc/hosts
    echo "slurm-local: added '$HOST' to /etc/hosts"
  fi
  getent hosts "$HOST" >/dev/null || die "host name '$HOST' does not resolve"
}

pid_alive() { # pidfile -> 0 when the process it names runs
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pid() { # pidfile name: SIGTERM, wait up to 15 s, then SIGKILL
  local pidfile=$1 name=$2 pid i
  pid_alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm-local: $name ($pid) ignored SIGTERM; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

ensure_munge_key() {
  # 1024 random bytes, owned by munge, mode 400. A new key invalidates the running munged.
  if [ -f "$MUNGE_KEY" ] && [ "$(stat -c %s "$MUNGE_KEY")" -eq 1024 ]; then
    chown munge:munge "$MUNGE_KEY"
    chmod 400 "$MUNGE_KEY"
    return 0
  fi
  stop_pid "$MUNGE_PID" munged
  install -d -o munge -g munge -m 700 /etc/munge
  dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  chown munge:munge "$MUNGE_KEY"
  chmod 400 "$MUNGE_KEY"
  echo "slurm-local: wrote a new munge key"
}

start_munge() {
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  if ! pid_alive "$MUNGE_PID"; then
    su -s /bin/sh munge -c /usr/sbin/munged
  fi
  local i
  for i in $(seq 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "munged does not answer (see /var/log/munge/munged.log)"
}

conf_text() {
  local mem_mb cpus
  cpus=$(nproc)
  mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
  cat <<EOF
# Written by progbench scripts/slurm-local.sh: a one-node cluster for tests. Edits are overwritten.
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem_mb / cpus))
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobRequeue=1
MailProg=/bin/true
# No accounting daemon: sacct does not work (submitit warns; progbench reads squeue instead).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Short waits so that tests of time limits and requeues finish quickly.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=5
MinJobAge=300
KillWait=5
MessageTimeout=10
InactiveLimit=0
Waittime=0
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

write_conf() { # -> 0 when the file changed
  local new
  new=$(conf_text)
  if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new" ]; then
    return 1
  fi
  install -d -m 755 /etc/slurm
  printf '%s\n' "$new" >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  echo "slurm-local: wrote $CONF"
  return 0
}

start_slurm() {
  install -d -m 755 /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
  pid_alive "$CTLD_PID" || /usr/sbin/slurmctld || die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
  pid_alive "$SLURMD_PID" || /usr/sbin/slurmd || die "slurmd did not start; see $LOG_DIR/slurmd.log"
}

node_state() { # long state of this node, '' when sinfo fails
  sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1 || true
}

node_usable() { # idle, mixed or allocated, and responding (no '*' suffix)
  case "$(node_state)" in
  idle | mixed | allocated | completing) return 0 ;;
  *) return 1 ;;
  esac
}

wait_usable() {
  local deadline=$((SECONDS + UP_TIMEOUT_S)) resumed=0 state
  while [ "$SECONDS" -lt "$deadline" ]; do
    node_usable && return 0
    state=$(node_state)
    if [ "$resumed" -eq 0 ] && [[ "$state" == down* || "$state" == drain* ]]; then
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    sleep 1
  done
  echo "slurm-local: node '$HOST' not usable after ${UP_TIMEOUT_S}s (state: '$(node_state)')" >&2
  sinfo -R 2>&1 | sed 's/^/  /' >&2 || true
  for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
    [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}

cmd_up() {
  need_root
  ensure_packages
  ensure_hostname
  ensure_munge_key
  start_munge
  if write_conf; then # new configuration: restart whatever runs with the old one
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
  fi
  start_slurm
  wait_usable
  echo "slurm-local: cluster 'local' up, node $HOST $(node_state)"
}

cmd_down() {
  need_root
  # Stop slurmd before slurmctld; running job steps are left to finish on their own.
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
  stop_pid "$MUNGE_PID" munged
  echo "slurm-local: stopped"
}

cmd_status() {
  sinfo 2>&1 || true
  if node_usable; then
    exit 0
  fi
  echo "slurm-local: node '$HOST' is not usable (state: '$(node_state)'); run: scripts/slurm-local.sh up" >&2
  exit 1
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
  echo "usage: $0 up|down|status" >&2
  exit 2
  ;;
esac
