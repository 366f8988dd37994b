"""What `python -m build ffi/python` and `auditwheel repair` made, and the
package installed from the manylinux wheel (run by tests_install/run.sh in the
venv that wheel is installed in): the wheels are platform-specific and carry
the library and py.typed, the manylinux tag is one this machine's glibc
satisfies, the sdist carries the Rust workspace, mypy reads the package's
types, and the builds left nothing in the source tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Iterator, List

import pytest

DIST = Path(os.environ.get("HYDRA_RS_DIST_DIR", "/nonexistent"))
WHEELHOUSE = Path(os.environ.get("HYDRA_RS_WHEELHOUSE", "/nonexistent"))
SOURCE = Path(os.environ.get("HYDRA_RS_SOURCE_ROOT", Path(__file__).resolve().parents[3]))
PYTHON_PROJECT = SOURCE / "ffi" / "python"


def _one(pattern: str, directory: Path = DIST) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {directory}, found {[p.name for p in found]}"
    return found[0]


def test_the_wheel_is_tagged_for_this_platform_and_any_python3():
    wheel = _one("*.whl")
    name, version, python, abi, platform = wheel.stem.split("-")
    assert (name, python, abi) == ("hydra_rs", "py3", "none"), wheel.name
    assert platform == sysconfig.get_platform().replace("-", "_").replace(".", "_"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        wheel_info = archive.read(f"hydra_rs-{version}.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false" in wheel_info


def test_the_manylinux_wheel_is_tagged_for_a_glibc_this_machine_has():
    wheel = _one("*.whl", WHEELHOUSE)
    name, version, python, abi, platforms = wheel.stem.split("-")
    assert (name, python, abi) == ("hydra_rs", "py3", "none"), wheel.name
    machine = sysconfig.get_platform().split("-", 1)[1].replace("-", "_")
    glibc = tuple(int(part) for part in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])
    for platform in platforms.split("."):
        # manylinux_2_34_x86_64, or a legacy alias such as manylinux2014_x86_64.
        assert platform.startswith("manylinux") and platform.endswith("_" + machine), wheel.name
        if platform.startswith("manylinux_"):
            major, minor = platform.split("_")[1:3]
            assert (int(major), int(minor)) <= glibc, f"{wheel.name} needs a newer glibc than {glibc}"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    # Nothing grafted: the library needs only libc and libgcc_s, which every manylinux system has.
    assert not [n for n in names if n.startswith("hydra_rs.libs/")], sorted(names)
    assert "hydra_rs/libhydra_ffi.so" in names


def test_the_installed_package_came_from_the_manylinux_wheel():
    import importlib.metadata

    wheel_file = importlib.metadata.distribution("hydra-rs").read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_file.splitlines() if line.startswith("Tag:")]
    assert tags and all("-manylinux" in tag for tag in tags), wheel_file


@pytest.mark.parametrize("directory", [DIST, WHEELHOUSE], ids=["wheel", "manylinux-wheel"])
def test_the_wheel_carries_the_library_and_type_hints(directory: Path):
    wheel = _one("*.whl", directory)
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        library = archive.getinfo("hydra_rs/libhydra_ffi.so")
        assert library.external_attr >> 16 & 0o111, "the library is executable"
        licence = archive.read(f"hydra_rs-{version}.dist-info/licenses/LICENSE").decode()
        metadata = archive.read(f"hydra_rs-{version}.dist-info/METADATA").decode()
    assert {"hydra_rs/__init__.py", "hydra_rs/_native.py", "hydra_rs/py.typed"} <= names
    # PEP 639: the licence as an SPDX expression, and its text inside the wheel.
    assert licence.startswith("MIT License") and "License-Expression: MIT" in metadata.splitlines()
    assert not [n for n in names if n.startswith("hydra_rs/") and n.endswith(".so") and n != library.filename]


def test_the_installed_package_loads_its_own_library():
    import hydra_rs
    from hydra_rs import _native

    assert "HYDRA_RS_LIBRARY" not in os.environ
    package = Path(hydra_rs.__file__).resolve().parent
    assert Path(sysconfig.get_paths()["purelib"]).resolve() in package.parents
    assert Path(_native.lib._name).resolve() == package / "libhydra_ffi.so"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, persistence off."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/15"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_service_by_name_works_with_no_variable_but_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch):
    import hydra_rs

    monkeypatch.setenv("HYDRA_REDIS_URL", redis_url)
    with hydra_rs.Hydra("wheel-check") as h:
        h.register_service()
        assert h.service_name == "wheel-check"
        assert [i["instanceID"] for i in h.get_service_presence("wheel-check")] == [h.instance_id]


def test_the_sdist_carries_the_rust_workspace():
    with tarfile.open(_one("*.tar.gz")) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    needed = {
        "pyproject.toml",
        "setup.py",
        "LICENSE",
        "hydra_rs/py.typed",
        "rust/Cargo.toml",
        "rust/Cargo.lock",
        "rust/src/lib.rs",
        "rust/ffi/Cargo.toml",
        "rust/ffi/src/lib.rs",
        "rust/include/hydra.h",
    }
    assert needed <= names, sorted(needed - names)
    assert not [n for n in names if n.startswith(("rust/target", "build/")) or ".egg-info/" in n.split("rust/")[0]]


def test_mypy_reads_the_package_types(tmp_path: Path):
    user = tmp_path / "user.py"
    user.write_text(
        "import hydra_rs\n"
        "with hydra_rs.Hydra('typed') as h:\n"
        "    reply = h.request('echo:/', {'n': 1}, timeout=2.0)\n"
        "    name: str = h.service_name\n"
        "    wrong: int = h.service_name\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    # The package is typed (py.typed): mypy checks the user's code against it,
    # finding exactly the deliberate mistake.
    assert result.returncode == 1, result.stdout + result.stderr
    lines: List[str] = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(lines) == 1 and "user.py:5:" in lines[0] and 'type "str"' in lines[0], result.stdout


@pytest.mark.parametrize("litter", ["build", "dist", "hydra_rs.egg-info", "target", "hydra_rs/libhydra_ffi.so"])
def test_builds_leave_no_litter_in_the_source_tree(litter: str):
    assert not (PYTHON_PROJECT / litter).exists(), f"{PYTHON_PROJECT / litter} was left behind by a build"
