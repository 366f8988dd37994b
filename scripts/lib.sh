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

# True when the CI variable says this is a CI run (set, not empty, 0 or false).
in_ci() {
    case "${CI:-}" in
        "" | 0 | false | FALSE | False) return 1 ;;
        *) return 0 ;;
    esac
}

# HYDRA_FFI_VALGRIND=0 (C tests without valgrind) and HYDRA_UPDATE_HEADER
# (rewrite include/hydra.h instead of checking it) are for local debugging:
# with CI set they are refused, otherwise a warning says the run is weaker.
refuse_weakening_in_ci() {
    local hatches=()
    [ "${HYDRA_FFI_VALGRIND:-}" = 0 ] && hatches+=("HYDRA_FFI_VALGRIND=0 (the C tests would skip valgrind)")
    [ -n "${HYDRA_UPDATE_HEADER+set}" ] && hatches+=("HYDRA_UPDATE_HEADER (include/hydra.h would be rewritten, not checked)")
    [ "${HYDRA_NO_TMUX:-}" = 1 ] && hatches+=("HYDRA_NO_TMUX=1 (hydra-cli watch would not be tested in a terminal)")
    [ "${#hatches[@]}" -eq 0 ] && return 0
    local hatch
    if in_ci; then
        for hatch in "${hatches[@]}"; do echo "error: $hatch is refused when CI is set" >&2; done
        exit 1
    fi
    for hatch in "${hatches[@]}"; do
        echo "WARNING: $hatch: this run is weaker than CI's" >&2
    done
}

ensure_redis_server() {
    command -v redis-server >/dev/null || apt_install redis-server
    command -v redis-server >/dev/null || die "redis-server still not found after installing"
}

# Debian's redis-sentinel for the Sentinel failover tests (tests/sentinel.rs,
# ffi/python/tests/test_sentinel.py) and examples/bench_failover: installed
# when missing and running as root, else a clear error.
ensure_redis_sentinel() {
    command -v redis-sentinel >/dev/null || apt_install redis-sentinel
    command -v redis-sentinel >/dev/null || die "redis-sentinel still not found after installing"
}

# Headless Chromium for the router dashboard's browser test (Debian's
# `chromium`): installed when missing and running as root, else the test
# fails saying how to install it.
ensure_chromium() {
    if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt_install chromium
    else
        echo "error: chromium missing: the dashboard test (cargo test -p hydra-router --test dashboard) will fail;" \
            "install it (e.g. 'sudo apt-get install chromium')" >&2
    fi
}

# tmux for hydra-cli's `watch` test (a real terminal): Debian's `tmux`,
# installed when missing and running as root, else the test fails saying how
# to install it (HYDRA_NO_TMUX=1 skips it knowingly; refused when CI is set).
ensure_tmux() {
    command -v tmux >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt_install tmux
    else
        echo "error: tmux missing: the watch test (cargo test -p hydra-redis-cli --test watch) will fail;" \
            "install it (e.g. 'sudo apt-get install tmux'), or set HYDRA_NO_TMUX=1 to skip it" >&2
    fi
}

# pytest for the Python tests: Debian's python3-pytest when running as root
# (pip may not install system-wide there), else pip.
ensure_pytest() {
    command -v python3 >/dev/null || apt_install python3
    python3 -m pytest --version >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt_install python3-pytest || true
        python3 -m pytest --version >/dev/null 2>&1 && return 0
    fi
    echo "==> pip install pytest"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check pytest ||
        echo "error: could not install pytest (the Python tests will fail)" >&2
}

# Go for examples/go (ffi/tests/install.rs builds and runs it): Debian's
# golang-go when missing and running as root; otherwise that test warns and
# passes (it fails in CI).
ensure_go() {
    command -v go >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt_install golang-go
    else
        echo "warning: go missing: the Go example is not tested; install it (e.g. 'sudo apt-get install golang-go')" >&2
    fi
}

# python3's venv module (Debian splits it out as python3-venv) for the Python
# packaging tests, which install into fresh virtual environments.
ensure_venv() {
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && return 0
    apt_install python3-venv
}

# "<passed> <failed> <skipped>" summed over JUnit XML files (pytest's --junitxml).
junit_counts() {
    python3 - "$@" <<'PY'
import sys
import xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        cases = list(ET.parse(path).getroot().iter("testcase"))
    except (OSError, ET.ParseError):
        cases = []
    bad = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    skip = sum(1 for c in cases if c.find("skipped") is not None and c.find("failure") is None and c.find("error") is None)
    passed, failed, skipped = passed + len(cases) - bad - skip, failed + bad, skipped + skip
print(passed, failed, skipped)
PY
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
