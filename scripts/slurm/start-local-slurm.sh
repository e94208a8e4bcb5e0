#!/usr/bin/env bash
# Brings up a one-node Slurm "cluster" on this machine (munge + slurmctld + slurmd on
# localhost), for vaepipe's Slurm integration tests (`VAEPIPE_SLURM_TESTS=1`). Idempotent: a
# second call finds the node up and returns at once. Needs root and apt (Debian 12: Slurm 22.05).
# Written for containers without systemd: no cgroups, daemons started directly, state under
# /var/spool/slurmctld and /var/spool/slurmd. Exit 0 when `sinfo` shows the node usable; any
# other exit prints what failed (the daemons' log tails) on stderr.
#
# Environment: SLURM_UP_TIMEOUT (seconds to wait for the node, default 60),
# VAEPIPE_SLURM_NO_INSTALL=1 (never apt-get; fail if Slurm is missing).
set -euo pipefail

TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_LOG="$LOG_DIR/slurmctld.log"
SLURMD_LOG="$LOG_DIR/slurmd.log"

say() { echo "start-local-slurm: $*" >&2; }
die() {
    say "FAILED: $*"
    for f in "$CTLD_LOG" "$SLURMD_LOG" /var/log/munge/munged.log; do
        if [[ -s "$f" ]]; then
            say "--- last lines of $f ---"
            tail -n 20 "$f" >&2 || true
        fi
    done
    exit 1
}

[[ "$(id -u)" == 0 ]] || die "needs root (installs packages, starts daemons); run it with sudo"

# Already up (a second call, or a machine with Slurm running): nothing to do.
node_usable() {
    local state
    state="$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1)" || return 1
    case "$state" in
        idle* | mix* | alloc* | comp*) return 0 ;;
        *) return 1 ;;
    esac
}
# A daemon is alive when a process of that name runs (a killed one can linger as a zombie).
alive() { pgrep -x "$1" -r R,S,D >/dev/null 2>&1; }
# slurmctld notices a dead slurmd only minutes later, so look at the daemons too.
if command -v sinfo >/dev/null && alive slurmd && alive munged && node_usable; then
    say "Slurm is already up: $(sinfo -h -N -o '%N %t %c CPUs' | head -n 1)"
    exit 0
fi

# 1. Packages.
missing=()
for bin in slurmctld slurmd sbatch munged; do
    command -v "$bin" >/dev/null || [[ -x "/usr/sbin/$bin" ]] || missing+=("$bin")
done
if ((${#missing[@]})); then
    [[ "${VAEPIPE_SLURM_NO_INSTALL:-0}" != 1 ]] || die "missing ${missing[*]} and VAEPIPE_SLURM_NO_INSTALL=1"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/tmp/vaepipe-slurm-apt.log 2>&1; then
        apt-get update >>/tmp/vaepipe-slurm-apt.log 2>&1 || true
        apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge \
            >>/tmp/vaepipe-slurm-apt.log 2>&1 || {
            tail -n 20 /tmp/vaepipe-slurm-apt.log >&2
            die "apt-get install failed (log above, full log in /tmp/vaepipe-slurm-apt.log)"
        }
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

# 2. Munge: a key (once), then the daemon.
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --force --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
fi
mkdir -p /var/log/munge /var/lib/munge /run/munge
if id munge >/dev/null 2>&1; then
    chown munge:munge /etc/munge /etc/munge/munge.key /var/log/munge /var/lib/munge /run/munge
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    munge_user=munge
else
    munge_user=root
fi
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    rm -f /run/munge/munged.pid
    if [[ "$munge_user" == munge ]]; then
        su -s /bin/sh munge -c "/usr/sbin/munged" || die "munged did not start"
    else
        /usr/sbin/munged --force || die "munged did not start"
    fi
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n </dev/null | unmunge >/dev/null || die "munge does not work (munge -n | unmunge failed)"
fi

# 3. slurm.conf for one node on this host.
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm
want="$(
    cat <<EOF
# Written by vaepipe's scripts/slurm/start-local-slurm.sh: one node on localhost, no cgroups.
ClusterName=vaepipe-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=100000
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldPort=6817
SlurmdPort=6818
# Keep finished jobs visible to scontrol for a while (no slurmdbd here, so no sacct).
MinJobAge=600
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)"
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$want" ]]; then
    say "writing $CONF (node $host, $cpus CPUs)"
    printf '%s\n' "$want" >"$CONF"
fi
# No cgroups in a container without systemd: proctrack/linuxproc and task/none need none, and
# Slurm 22.05 has no `CgroupPlugin=disabled` (a cgroup.conf naming it stops slurmd), so make sure
# there is no cgroup.conf of ours.
if [[ -f "$CONF_DIR/cgroup.conf" ]] && grep -q 'vaepipe' "$CONF_DIR/cgroup.conf"; then
    rm -f "$CONF_DIR/cgroup.conf"
fi

# 4. Daemons (started directly; -c on first start clears stale state from an old config).
if ! scontrol ping 2>/dev/null | grep -q UP && ! alive slurmctld; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -c -i || die "slurmctld did not start"
fi
for _ in $(seq 50); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer (scontrol ping)"
if ! alive slurmd; then
    say "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start"
fi

# 5. Wait (bounded) for the node to be usable; resume it if it came up DOWN/DRAINED.
deadline=$((SECONDS + TIMEOUT))
while ((SECONDS < deadline)); do
    node_usable && break
    state="$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1 || true)"
    case "$state" in
        down* | drain* | drng* | fail*)
            scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
            ;;
    esac
    sleep 1
done
if ! node_usable; then
    say "sinfo says: $(sinfo -N -l 2>&1 | tail -n +2 || true)"
    die "node $host not idle after ${TIMEOUT}s"
fi
say "Slurm is up: $(sinfo -h -N -o '%N %t %c CPUs' | head -n 1)"
