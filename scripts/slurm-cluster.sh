#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying and testing `zepad-bench run --executor slurm`.
#
#   sudo scripts/slurm-cluster.sh            # install (Debian/Ubuntu packages) and start; idempotent
#   sudo scripts/slurm-cluster.sh status     # exit 0 when the cluster answers
#   sudo scripts/slurm-cluster.sh stop [DAEMON…]   # slurmd slurmctld slurmdbd mariadb munge (default: all)
#
# Runs munge, MariaDB + slurmdbd (job accounting, what `sacct` reads), slurmctld and slurmd on
# localhost, started directly (no systemd needed: containers, CI runners). The node offers what
# `slurmd -C` finds (CPUs, memory) in one partition, `debug`. Configuration it writes carries the
# marker below and is rewritten on each start; a file without the marker is left alone.
# A second run finds the cluster answering and returns at once. Needs root.
set -euo pipefail

MARK="# written by zepad-bench scripts/slurm-cluster.sh"
CONF=/etc/slurm
LOGS=/var/log/slurm
STATE=/var/lib/slurm
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
NODE="$(hostname -s)"

say() { echo "slurm-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- probes (each bounded in time: a dead daemon never hangs the script) ---------------------------
answers() { # the controller answers and the node is usable (idle, mixed or allocated)
  command -v sinfo >/dev/null 2>&1 && running /run/slurmctld.pid && running /run/slurmd.pid || return 1
  local state
  state="$(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)" || return 1
  [[ "$state" =~ ^(idle|mixed|allocated|completing)$ ]]
}
accounting_answers() { running /run/slurmdbd.pid && timeout 10 sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx zepad; }
munge_answers() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
db_answers() { timeout 5 mariadb-admin ping >/dev/null 2>&1; }
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { # wait_for SECONDS WHAT COMMAND…
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$((seconds * 2))"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$what did not come up within ${seconds}s (logs: $LOGS, /var/log/mysql)"
}

# --- install -------------------------------------------------------------------------------------
install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu) to install ${missing[*]}"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local wait=(-o DPkg::Lock::Timeout=600)  # another apt run (CI images, other setup) may hold the lock
  apt-get "${wait[@]}" update -qq
  apt-get "${wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- configuration -------------------------------------------------------------------------------
ours() { [[ ! -e "$1" ]] || grep -qF "$MARK" "$1"; }

write_config() {
  install -d -o slurm -g slurm "$LOGS" "$STATE" "$STATE/slurmctld" "$STATE/slurmd"
  install -d "$CONF"
  local node_line
  node_line="$(slurmd -C | head -1 | sed 's/ UpTime=.*//')"
  [[ "$node_line" == NodeName=* ]] || die "slurmd -C did not describe this node: $node_line"
  if ours "$CONF/slurm.conf"; then
    cat >"$CONF/slurm.conf" <<EOF
$MARK
ClusterName=zepad
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
KillWait=5
MinJobAge=300
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  fi
  if ours "$CONF/slurmdbd.conf"; then
    local password
    password="$(sed -n 's/^StoragePass=//p' "$CONF/slurmdbd.conf" 2>/dev/null || true)"
    [[ -n "$password" ]] || password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    cat >"$CONF/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
  fi
  chown slurm:slurm "$CONF/slurmdbd.conf"
  chmod 600 "$CONF/slurmdbd.conf"
}

# --- daemons -------------------------------------------------------------------------------------
start_munge() {
  munge_answers && return 0
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  wait_for 10 munge munge_answers
}

start_mariadb() {
  db_answers && return 0
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  install -d -o mysql -g mysql /run/mysqld /var/log/mysql
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
    >>/var/log/mysql/zepad-bench.log 2>&1 </dev/null &
  wait_for 60 MariaDB db_answers
}

start_slurmdbd() {
  accounting_answers && return 0
  local password
  password="$(sed -n 's/^StoragePass=//p' "$CONF/slurmdbd.conf")"
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  running /run/slurmdbd.pid || /usr/sbin/slurmdbd
  wait_for 60 slurmdbd timeout 10 sacctmgr -n list cluster
  accounting_answers || timeout 10 sacctmgr -i add cluster zepad >/dev/null
}

start_slurm() {
  running /run/slurmctld.pid || /usr/sbin/slurmctld
  wait_for 30 slurmctld timeout 5 scontrol ping
  running /run/slurmd.pid || /usr/sbin/slurmd
  # a node left down or drained by an earlier, killed cluster is put back in service
  timeout 10 scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  wait_for 30 "slurmd on $NODE" answers
}

stop() {
  local daemons=("$@")
  ((${#daemons[@]})) || daemons=(slurmd slurmctld slurmdbd mariadb munge)
  for d in "${daemons[@]}"; do
    case "$d" in
      slurmd | slurmctld | slurmdbd) pidfile=/run/$d.pid ;;
      mariadb) pidfile=/run/mysqld/mysqld.pid ;;
      munge) pidfile=/run/munge/munged.pid ;;
      *) die "stop: unknown daemon '$d' (slurmd slurmctld slurmdbd mariadb munge)" ;;
    esac
    if running "$pidfile"; then
      local pid
      pid="$(cat "$pidfile")"
      kill "$pid"
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      say "stopped $d"
    fi
    rm -f "$pidfile"  # a stale one would stop the packages' removal scripts (and could name another pid)
  done
}

main() {
  [[ $EUID -eq 0 ]] || die "run as root (it installs packages and starts system daemons)"
  case "${1:-start}" in
    status)
      answers && accounting_answers && { say "running (node $NODE)"; exit 0; }
      say "not running"; exit 1 ;;
    stop) shift; stop "$@"; exit 0 ;;
    start) ;;
    *) die "unknown command '$1' (start, status, stop)" ;;
  esac
  if answers && accounting_answers; then
    say "already running (node $NODE)"
    exit 0
  fi
  local t0=$SECONDS
  install_packages
  write_config
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurm
  say "running (node $NODE; $(sinfo -h -o '%c CPUs, %m MB' | head -1)) after $((SECONDS - t0))s"
}

main "$@"
