#!/usr/bin/env bash
# A real Slurm cluster on this one machine, for tests of launching across
# hosts: slurmctld in the root network namespace on a bridge, and N slurmd,
# each in a network namespace of its own (so each node has its own IP, and
# tasks on different nodes can bind the same port).
# tests/src/slurm.rs drives it; people can too:
#
#   scripts/slurm-cluster.sh install   # Debian's Slurm and munge (apt-get)
#   scripts/slurm-cluster.sh up [N]    # N nodes (default 3), all idle on return
#   eval "$(scripts/slurm-cluster.sh env)"   # or the printed `export SLURM_CONF=...`
#   srun -N3 -n3 -l bash -c 'echo $SLURMD_NODENAME $(hostname -I)'
#   scripts/slurm-cluster.sh status
#   scripts/slurm-cluster.sh down      # cancel jobs, stop daemons, remove it all
#
# Needs root (namespaces, daemons) and no init system: the daemons are
# started by hand. The config is written to $LP_SLURM_DIR/slurm.conf and
# found through SLURM_CONF (every Slurm command and daemon of Debian's
# 22.05 honours it; the daemons are also given `-f`), so /etc/slurm is not
# touched. Client commands (srun, sbatch, squeue, ...) need
# `export SLURM_CONF=$LP_SLURM_DIR/slurm.conf`; they run in the root
# namespace and reach slurmctld on the bridge IP.
#
# Names (kept apart from tests/src/netns.rs, which uses `lp-<pid>-...`
# namespaces, `lpbr...`/`lpv...`/`lpp...` links and 10.64-191.x.x, and
# from scripts/bench-hosts.sh, which uses lp-bench-h*, lpbench0 and
# 10.231.77.x): with tag T (LP_SLURM_TAG, default `0`, 1-3 of [a-z0-9]),
# namespaces `lpsl<T>-n<i>`, bridge `lpsl<T>br`, veths `lpsl<T>v<i>`,
# nodes `n1`..`nN`, and the first 10.233.x.0/24 that no route uses (the
# bridge is .254, node i is .i). slurmctld listens on the first free TCP
# port from 6817 up; slurmd on 6818 in each namespace. Two clusters can run
# side by side with different LP_SLURM_DIR and LP_SLURM_TAG.
#
# State directory ($LP_SLURM_DIR, default /tmp/lp-slurm): slurm.conf, `env`
# (shell assignments: SLURM_CONF, LP_SLURM_CONTROLLER, LP_SLURM_PORT,
# LP_SLURM_NODES, LP_SLURM_NODE_IPS, LP_SLURM_NAMESPACES, LP_SLURM_BRIDGE,
# LP_SLURM_PARTITION, LP_SLURM_SMALL_PARTITION,
# LP_SLURM_ENFORCE_PART_LIMITS), log/, spool/, state/ and
# pid files. Partitions: `lp` (default, all nodes) and `lpone` (node n1
# only). munged is reused when one answers, else started (and stopped by
# `down` when no other slurm daemon is left).
#
# Knobs: LP_SLURM_UP_TIMEOUT (s, default 20: how long `up` waits for every
# node to be idle before it fails, showing sinfo and the logs' tails);
# LP_SLURM_ENFORCE_PART_LIMITS (ALL, the default: a job that cannot fit is
# refused at submission; NO, Slurm's own default: it pends for ever).
#
# Pitfalls found on the way: every Slurm client, even
# `srun --version`, fails without a config ("Could not establish a
# configuration source"); with SLURM_CONF naming a missing file it retries
# for 60 s before failing; the namespaces have no route out of the bridge;
# slurmd that cannot reach slurmctld is slow to obey SIGTERM (so `down`
# kills after 2 s); the stopped daemons show as <defunct> in `pgrep -a
# slurm` for a second or two after `down` (PID 1 reaps them late).
set -euo pipefail

DIR=${LP_SLURM_DIR:-/tmp/lp-slurm}
TAG=${LP_SLURM_TAG:-0}
[[ $TAG =~ ^[a-z0-9]{1,3}$ ]] || { echo "LP_SLURM_TAG=$TAG: 1-3 of [a-z0-9]" >&2; exit 2; }
case $DIR in /*) ;; *) echo "LP_SLURM_DIR=$DIR: must be absolute" >&2; exit 2 ;; esac
PREFIX=lpsl$TAG
BRIDGE=${PREFIX}br
CONF=$DIR/slurm.conf
PARTITION="lp"
SMALL_PARTITION="lpone"
UP_TIMEOUT=${LP_SLURM_UP_TIMEOUT:-20}
# ALL: a job that no node or partition of the cluster can hold is refused
# at submission ("More processors requested than permitted", "Node count
# specification invalid"). NO (Slurm's own default) accepts it, and it
# pends for ever with Reason=PartitionConfig or PartitionNodeLimit.
ENFORCE_PART_LIMITS=${LP_SLURM_ENFORCE_PART_LIMITS:-ALL}
[[ $ENFORCE_PART_LIMITS =~ ^(ALL|ANY|NO)$ ]] \
  || { echo "LP_SLURM_ENFORCE_PART_LIMITS=$ENFORCE_PART_LIMITS: ALL, ANY or NO" >&2; exit 2; }
# Serialises up/down/status of this tag across processes (not held while a
# cluster runs: tests/src/slurm.rs holds a lock of its own for that).
LOCK=/tmp/lp-slurm-$TAG.ops.lock

say() { echo "slurm-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (namespaces, daemons)"; }

# Whether PID is a live process (not gone, not a zombie: PID 1 here reaps
# late, so `kill -0` says a killed daemon lives).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != [ZX] ]]
}

# Pids of live processes whose command line mentions our slurm.conf (the
# daemons are started with `-f $CONF`).
ours() {
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    [[ $cmd == *"-f $CONF "* || $cmd == *"-f $CONF" ]] || continue
    alive "$p" && echo "$p"
  done
  return 0
}

# Pids of live processes whose name (comm) matches the regex $1 exactly.
live_named() {
  local p comm
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    [[ $comm =~ ^($1)$ ]] && alive "$p" && echo "$p"
  done
  return 0
}

# Wait up to $1 tenths of a second until none of the pids $2... lives.
wait_gone() {
  local tenths=$1 p left
  shift
  while :; do
    left=0
    for p in "$@"; do alive "$p" && left=1; done
    [ $left = 0 ] && return 0
    [ "$tenths" -le 0 ] && return 1
    sleep 0.1
    tenths=$((tenths - 1))
  done
}

# (Not `srun --version`: every Slurm client, even for --version, exits
# with "Could not establish a configuration source" when no config is found.)
slurm_version() { dpkg-query -W -f 'slurm ${Version}' slurmctld 2>/dev/null || echo "slurm (not from a package)"; }

cmd_install() {
  need_root
  if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v srun >/dev/null \
    && [ -x /usr/sbin/munged ] && command -v ip >/dev/null && command -v nsenter >/dev/null; then
    say "already installed: $(slurm_version)"
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Once: an image without package lists finds nothing to install.
  if ! apt-cache show slurmctld >/dev/null 2>&1; then apt-get update; fi
  apt-get install -y --no-install-recommends \
    slurm-wlm slurmctld slurmd slurm-client munge iproute2 util-linux
  say "installed: $(slurm_version)"
}

# The first 10.233.x.0/24 that no route or address of the machine uses.
free_subnet() {
  local used b
  used=$(ip -4 route show table all; ip -4 -o addr show)
  for b in $(seq 0 255); do
    if ! grep -q "10\.233\.$b\." <<<"$used"; then echo "10.233.$b"; return 0; fi
  done
  die "no free 10.233.x.0/24"
}

# The first TCP port from 6817 up that nothing listens on.
free_port() {
  local listening port
  listening=$(ss -Htln 2>/dev/null | awk '{print $4}')
  for port in $(seq 6817 6899); do
    if ! grep -qE "[:.]$port\$" <<<"$listening"; then echo "$port"; return 0; fi
  done
  die "no free TCP port in 6817-6899 for slurmctld"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then
      runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      chown munge:munge /etc/munge/munge.key
      chmod 0400 /etc/munge/munge.key
    fi
  fi
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged 9>&-
  touch "$DIR/munged.ours"
  local i
  for i in $(seq 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "munged does not answer (see /var/log/munge/munged.log)"
}

write_conf() {
  local subnet=$1 port=$2 n=$3 i
  local host
  host=$(hostname -s)
  {
    echo "# Written by scripts/slurm-cluster.sh; removed by its \`down\`."
    echo "ClusterName=lpslurm$TAG"
    echo "SlurmctldHost=$host($subnet.254)"
    echo "SlurmctldPort=$port"
    echo "SlurmdPort=6818"
    echo "SlurmUser=slurm"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "MpiDefault=none"
    echo "SchedulerType=sched/backfill"
    # Heterogeneous jobs are started only by backfill: every second.
    echo "SchedulerParameters=bf_interval=1"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "ReturnToService=2"
    echo "MailProg=/bin/true"
    # Quick teardown: SIGKILL 2 s after the SIGTERM of scancel.
    echo "KillWait=2"
    echo "InactiveLimit=0"
    echo "EnforcePartLimits=$ENFORCE_PART_LIMITS"
    echo "StateSaveLocation=$DIR/state"
    echo "SlurmdSpoolDir=$DIR/spool/%n"
    echo "SlurmctldPidFile=$DIR/slurmctld.pid"
    echo "SlurmdPidFile=$DIR/slurmd-%n.pid"
    echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
    echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
    for i in $(seq "$n"); do
      echo "NodeName=n$i NodeAddr=$subnet.$i Port=6818 CPUs=2 RealMemory=2000 State=UNKNOWN"
    done
    echo "PartitionName=$PARTITION Nodes=n[1-$n] Default=YES MaxTime=INFINITE State=UP"
    echo "PartitionName=$SMALL_PARTITION Nodes=n1 Default=NO MaxTime=INFINITE State=UP"
  } >"$CONF"
  chmod 0644 "$CONF"
}

make_network() {
  local subnet=$1 n=$2 i ns
  ip link add "$BRIDGE" type bridge
  ip addr add "$subnet.254/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq "$n"); do
    ns=$PREFIX-n$i
    ip netns add "$ns"
    ip link add "${PREFIX}v$i" type veth peer name "${PREFIX}p$i"
    ip link set "${PREFIX}p$i" netns "$ns"
    ip link set "${PREFIX}v$i" master "$BRIDGE" up
    ip -n "$ns" link set "${PREFIX}p$i" name eth0
    ip -n "$ns" addr add "$subnet.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

# Whether the cluster of this state directory runs: slurmctld and every
# slurmd alive.
running() {
  [ -f "$DIR/env" ] || return 1
  local pid node
  pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null) || return 1
  alive "$pid" || return 1
  # shellcheck disable=SC1091
  for node in $(. "$DIR/env"; echo "$LP_SLURM_NODES"); do
    pid=$(cat "$DIR/slurmd-$node.pid" 2>/dev/null) || return 1
    alive "$pid" || return 1
  done
}

tail_logs() {
  local f
  for f in "$DIR"/log/*.log; do
    [ -f "$f" ] || continue
    echo "--- tail of $f" >&2
    # Without the harmless noise of the missing PMIx library.
    grep -vE 'pmix|PMIx|MPI: Cannot create context' "$f" | tail -n 15 >&2
  done
}

cmd_up() {
  local n=${1:-3}
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 99 ]; then
    die "up N: 1 to 99 nodes, not $n"
  fi
  need_root
  if ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/slurmd ]; then
    die "Slurm is not installed: run $0 install"
  fi
  if running; then
    local have
    # shellcheck disable=SC1091
    have=$(. "$DIR/env"; echo "$LP_SLURM_NODES" | wc -w)
    if [ "$have" != "$n" ]; then
      die "a cluster of $have nodes already runs in $DIR: run $0 down first"
    fi
    say "already up ($n nodes, $DIR)"
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  if [ -e "$DIR" ] || ip netns list | grep -q "^$PREFIX-n" || ip link show "$BRIDGE" >/dev/null 2>&1; then
    say "removing what a previous cluster left"
    cmd_down_locked
  fi
  mkdir -p "$DIR/log" "$DIR/spool" "$DIR/state"
  chmod 0755 "$DIR"
  chown slurm:slurm "$DIR/state" "$DIR/log"
  local subnet port i ips="" nodes="" namespaces=""
  subnet=$(free_subnet)
  port=$(free_port)
  for i in $(seq "$n"); do
    nodes+="${nodes:+ }n$i"
    ips+="${ips:+ }$subnet.$i"
    namespaces+="${namespaces:+ }$PREFIX-n$i"
    mkdir -p "$DIR/spool/n$i"
  done
  cat >"$DIR/env" <<EOF
SLURM_CONF=$CONF
LP_SLURM_DIR=$DIR
LP_SLURM_CONTROLLER=$subnet.254
LP_SLURM_PORT=$port
LP_SLURM_NODES="$nodes"
LP_SLURM_NODE_IPS="$ips"
LP_SLURM_NAMESPACES="$namespaces"
LP_SLURM_BRIDGE=$BRIDGE
LP_SLURM_PARTITION=$PARTITION
LP_SLURM_SMALL_PARTITION=$SMALL_PARTITION
LP_SLURM_ENFORCE_PART_LIMITS=$ENFORCE_PART_LIMITS
EOF
  write_conf "$subnet" "$port" "$n"
  make_network "$subnet" "$n"
  start_munge
  export SLURM_CONF=$CONF
  # 9>&-: daemons must not keep the lock of this script.
  /usr/sbin/slurmctld -c -f "$CONF" 9>&- || { tail_logs; die "slurmctld did not start"; }
  for i in $(seq "$n"); do
    # nsenter, not `ip netns exec`: that remounts /sys, and slurmd then dies.
    nsenter --net="/run/netns/$PREFIX-n$i" /usr/sbin/slurmd -f "$CONF" -N "n$i" 9>&- \
      || { tail_logs; die "slurmd n$i did not start"; }
  done
  local deadline=$((SECONDS + UP_TIMEOUT)) states
  while :; do
    states=$(sinfo -h -N -p "$PARTITION" -o '%N %t' 2>/dev/null || true)
    if [ "$(grep -c ' idle$' <<<"$states")" = "$n" ]; then break; fi
    if [ $SECONDS -ge $deadline ]; then
      say "not all $n nodes idle after ${UP_TIMEOUT}s; sinfo says:"
      echo "${states:-(nothing: slurmctld does not answer)}" >&2
      tail_logs
      die "up failed; $0 down removes what was made"
    fi
    sleep 0.1
  done
  say "up: $n nodes ($nodes) at $ips, controller $subnet.254:$port, partitions $PARTITION (default), $SMALL_PARTITION"
  echo "export SLURM_CONF=$CONF"
}

# Stop the daemons of the pid files $@: SIGTERM, up to 2 s, then SIGKILL.
stop_pidfile() {
  local f pid pids=()
  for f in "$@"; do
    pid=$(cat "$f" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && pids+=("$pid")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait_gone 20 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
}

cmd_down_locked() {
  need_root
  export SLURM_CONF=$CONF
  local ctld pid ns pids i
  ctld=$(cat "$DIR/slurmctld.pid" 2>/dev/null || true)
  # Jobs first: slurmstepd outlives slurmd.
  if [ -f "$CONF" ] && [[ $ctld =~ ^[0-9]+$ ]] && alive "$ctld"; then
    local jobs
    jobs=$(timeout 3 squeue -h -o '%A' 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      timeout 3 scancel $jobs 2>/dev/null || true
      # Running and completing ones end within KillWait (2 s).
      for i in $(seq 50); do
        [ -z "$(timeout 3 squeue -h -o '%A' 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  # All slurmd at once: one that cannot reach slurmctld takes its time
  # over SIGTERM.
  stop_pidfile "$DIR"/slurmd-*.pid
  # Whatever lives in our namespaces (slurmstepd, tasks, a slurmd without
  # a pid file) is killed.
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-n" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; fi
  done
  stop_pidfile "$DIR/slurmctld.pid"
  pids=$(ours)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone 20 $pids || kill -KILL $pids 2>/dev/null || true
  fi
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-n" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && { kill -KILL $pids 2>/dev/null || true; wait_gone 20 $pids || true; }
    ip netns del "$ns" 2>/dev/null || true
  done
  for i in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^${PREFIX}[vp][0-9]" || true); do
    ip link del "$i" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  # (Not pgrep: it counts the zombies of the daemons just stopped.)
  if [ -f "$DIR/munged.ours" ] && [ -z "$(live_named 'slurmctld|slurmd|slurmstepd')" ]; then
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      wait_gone 20 "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$DIR"
}

cmd_down() {
  local t0=$SECONDS
  cmd_down_locked
  say "down ($((SECONDS - t0))s)"
}

cmd_status() {
  if ! running; then
    echo "slurm cluster is down ($DIR)"
    return 3
  fi
  export SLURM_CONF=$CONF
  cat "$DIR/env"
  sinfo
  squeue
}

cmd_env() {
  [ -f "$DIR/env" ] || die "no cluster in $DIR"
  sed 's/^/export /' "$DIR/env"
}

main() {
  local sub=${1:-}
  [ $# -gt 0 ] && shift
  case $sub in
    install) cmd_install ;;
    up | down | status)
      exec 9>"$LOCK"
      flock -w 60 9 || die "another slurm-cluster.sh holds $LOCK"
      "cmd_$sub" "$@"
      ;;
    env) cmd_env ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
