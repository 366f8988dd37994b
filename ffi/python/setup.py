"""Builds the hydra_rs package with setuptools-rust: cargo compiles the C ABI
crate (``hydra-ffi``, release) and its ``libhydra_ffi.so`` goes inside the
package, next to ``_native.py``, which loads it with ctypes.

Metadata is in ``pyproject.toml``. This file holds only what setuptools cannot
be told declaratively:

- where the Rust crate is: ``../Cargo.toml`` in the repository, ``rust/ffi``
  in an sdist;
- the sdist carries the Rust workspace (setuptools only ships files below this
  directory, and the crate and the library it wraps live above it);
- the file keeps its own name (``libhydra_ffi.so``, not an extension-module
  name: nothing imports it, ctypes loads it);
- the wheel is tagged ``py3-none-<platform>``: it holds machine code but uses
  no Python C API, so any Python 3 on that platform can use it;
- setuptools' scratch directories (``build/``, ``*.egg-info``) go to a
  temporary directory, not into the source tree.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, Strip

HERE = Path(__file__).resolve().parent
#: The library's module-style name: hydra_rs/libhydra_ffi.so.
LIBRARY = "hydra_rs.libhydra_ffi"
if sys.platform == "darwin":
    LIBRARY_FILE = "libhydra_ffi.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "hydra_ffi.dll"
else:
    LIBRARY_FILE = "libhydra_ffi.so"
#: Where an sdist keeps the Rust workspace (see RustWorkspaceSdist).
SDIST_WORKSPACE = "rust"


def crate_manifest() -> str:
    """hydra-ffi's Cargo.toml: inside an unpacked sdist, else the repository's."""
    packed = HERE / SDIST_WORKSPACE / "ffi" / "Cargo.toml"
    return str(packed if packed.is_file() else HERE.parent / "Cargo.toml")


class LibraryNamedBuildExt(build_ext):
    """Gives the library its own file name instead of ``<name>.cpython-3xx-<platform>.so``."""

    def get_ext_filename(self, fullname: str) -> str:
        # Asked with the dotted name, or (by get_ext_fullpath) its last part.
        if fullname == LIBRARY:
            return str(Path(*LIBRARY.split(".")[:-1], LIBRARY_FILE))
        if fullname == LIBRARY.rsplit(".", 1)[1]:
            return LIBRARY_FILE
        return str(super().get_ext_filename(fullname))


class AnyPythonWheel(bdist_wheel):
    """``py3-none-<platform>``: machine code, but no Python ABI in it."""

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


class RustWorkspaceSdist(sdist):
    """Adds the Rust workspace under ``rust/``: the root manifest and lock file,
    and every member's manifest and sources (cargo loads the whole workspace to
    build one crate of it, and ``--locked`` holds it to the lock file)."""

    def make_release_tree(self, base_dir: str, files: List[str]) -> None:
        super().make_release_tree(base_dir, files)
        metadata = json.loads(
            subprocess.run(
                ["cargo", "metadata", "--format-version", "1", "--no-deps", "--manifest-path", crate_manifest()],
                check=True,
                capture_output=True,
            ).stdout
        )
        root = Path(metadata["workspace_root"])
        target = Path(base_dir) / SDIST_WORKSPACE
        self.mkpath(str(target))
        for name in ("Cargo.toml", "Cargo.lock"):
            self.copy_file(str(root / name), str(target / name))
        for package in metadata["packages"]:
            crate = Path(package["manifest_path"]).parent
            into = target / crate.relative_to(root)
            self.mkpath(str(into))
            for name in ("Cargo.toml", "build.rs", "cbindgen.toml"):
                if (crate / name).is_file():
                    self.copy_file(str(crate / name), str(into / name))
            shutil.copytree(crate / "src", into / "src", dirs_exist_ok=True)
        shutil.copytree(root / "include", target / "include", dirs_exist_ok=True)


def scratch_directory() -> str:
    """A temporary directory for setuptools' build/ and egg-info, removed at exit."""
    path = tempfile.mkdtemp(prefix="hydra-rs-python-build-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


scratch = scratch_directory()

setup(
    rust_extensions=[
        RustExtension(
            LIBRARY,
            path=crate_manifest(),
            binding=Binding.NoBinding,
            # Cargo.lock decides every dependency's version, as in the repository.
            cargo_manifest_args=["--locked"],
            strip=Strip.Debug,
        )
    ],
    cmdclass={"build_ext": LibraryNamedBuildExt, "bdist_wheel": AnyPythonWheel, "sdist": RustWorkspaceSdist},
    options={
        "build": {"build_base": str(Path(scratch) / "build")},
        "egg_info": {"egg_base": scratch},
    },
    zip_safe=False,
)
