# shellcheck shell=bash
# Helpers shared by scripts/services.sh (sourced, not executed).
#
# Invariants: every function returns non-zero instead of exiting, so callers decide; messages go to
# stderr prefixed with the service name; apt-get update runs at most once per script run.

APT_UPDATED=0

log() { # log <service> <message...>
    local svc=$1
    shift
    printf '[%s] %s\n' "$svc" "$*" >&2
}

die() { # die <service> <message...>: print and exit 1
    log "$@"
    exit 1
}

# True when the Debian package is installed (not merely known or half-removed).
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# apt_install <service> <package...>: installs only the missing packages; `apt-get update` once.
apt_install() {
    local svc=$1
    shift
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    if ((EUID != 0)); then
        log "$svc" "missing packages ${missing[*]} and not root: run 'apt-get install ${missing[*]}' as root"
        return 1
    fi
    if ((APT_UPDATED == 0)); then
        log "$svc" "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "$svc" "apt-get install ${missing[*]}"
    # RUNLEVEL=1 keeps the packages' init scripts from starting their own daemons on default ports.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# True when something accepts TCP connections on 127.0.0.1:<port>.
port_open() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# pid_alive <pidfile> <pattern>: true when the pid file names a live process whose command line
# contains the pattern (RUN_DIR outlives reboots, and a stale pid may belong to someone else by now).
pid_alive() {
    local pidfile=$1 pattern=$2 pid cmdline
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$pattern"* ]]
}

# wait_pid_gone <pid> <seconds>: true when the process exited within the time.
wait_pid_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

# render_template <src> <dst> NAME=value...: replaces @NAME@ placeholders; fails on leftovers.
render_template() {
    local src=$1 dst=$2 content kv
    shift 2
    content=$(<"$src")
    for kv in "$@"; do
        content=${content//"@${kv%%=*}@"/"${kv#*=}"}
    done
    if [[ $content =~ @[A-Z_]+@ ]]; then
        printf 'unrendered placeholder %s in %s\n' "${BASH_REMATCH[0]}" "$src" >&2
        return 1
    fi
    printf '%s\n' "$content" >"$dst.tmp"
    mv "$dst.tmp" "$dst"
}
