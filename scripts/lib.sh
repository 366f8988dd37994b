# Shared by scripts/test and scripts/demo: make sure what they need is installed.
# Sourced, not run.

die() { echo "error: $*" >&2; exit 1; }

apt_install() {
    # Installs Debian packages when running as root; otherwise says how.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing $* (Debian packages)"
        if [ -z "${HYDRA_APT_UPDATED:-}" ]; then
            apt-get update -qq >/dev/null
            HYDRA_APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        die "$* missing: install it (e.g. 'sudo apt-get install $*') and run again"
    fi
}

ensure_redis_server() {
    command -v redis-server >/dev/null || apt_install redis-server
    command -v redis-server >/dev/null || die "redis-server still not found after installing"
}

ensure_node() {
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
}

# Node hydra@1.9.3 for the interop tests, pinned by interop/package-lock.json.
ensure_node_interop() {
    ensure_node
    local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local installed="$root/interop/node_modules/.package-lock.json"
    if [ ! -f "$root/interop/node_modules/hydra/package.json" ] ||
        [ "$root/interop/package-lock.json" -nt "$installed" ]; then
        echo "==> npm ci (Node hydra 1.9.3 for interop tests)"
        npm ci --prefix "$root/interop" --no-audit --no-fund --loglevel=error >/dev/null
    fi
}

# True when something answers PING on host:port (bash /dev/tcp, no redis-cli needed).
redis_answers() {
    local host=$1 port=$2 reply
    { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3>&- 3<&-
    [[ "$reply" == +PONG* ]]
}

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(( (RANDOM % 30000) + 20000 ))
        if ! { (exec 3<>"/dev/tcp/127.0.0.1/$port"); } 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}
