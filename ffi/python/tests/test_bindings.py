"""The ctypes image of the ABI is complete and exact: every function, callback
type and constant of include/hydra.h is declared in hydra_rs._native with the
types the header gives, and every function is reached by the Pythonic layer."""

import ctypes
import re
from ctypes import POINTER, c_bool, c_char_p, c_int32, c_size_t, c_uint16, c_uint32, c_uint64, c_void_p
from pathlib import Path

import pytest

import hydra_rs
from hydra_rs import _native as n
from hydra_rs import errors

ROOT = Path(__file__).resolve().parents[3]
HEADER = ROOT / "include" / "hydra.h"
PACKAGE = Path(hydra_rs.__file__).resolve().parent

# Helpers for C callers that Python does with its own json module.
C_ONLY = {"hydra_json_get", "hydra_json_get_string"}


def _statements():
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    defines = dict(re.findall(r"^\s*#define\s+(HYDRA_\w+)\s+(-?\d+)\s*$", text, flags=re.M))
    text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)
    text = text.replace('extern "C" {', " ").replace("}", " ")
    statements = [" ".join(s.split()) for s in text.split(";")]
    return defines, [s for s in statements if s]


def _split_params(params):
    params = params.strip()
    if params in ("", "void"):
        return []
    return [p.strip() for p in params.split(",")]


def _param_type(param):
    """`const char *message_json` -> `const char *`."""
    match = re.match(r"^(.*?[\s*])(\w+)$", param)
    assert match, f"cannot parse parameter {param!r}"
    return _norm(match.group(1))


def _norm(ctype):
    ctype = re.sub(r"\s*\*", " *", ctype.strip())
    return re.sub(r"\s+", " ", ctype).replace("* *", "**")


def _expected(ctype, position):
    """The ctypes type a C type must be declared as (see _native's docstring)."""
    ctype = _norm(ctype)
    scalars = {
        "int32_t": c_int32,
        "uint16_t": c_uint16,
        "uint32_t": c_uint32,
        "uint64_t": c_uint64,
        "size_t": c_size_t,
        "bool": c_bool,
    }
    if ctype == "void" and position == "result":
        return None
    if ctype in scalars:
        return scalars[ctype]
    if ctype in ("const char *", "const uint8_t *"):
        return c_char_p
    if ctype == "char *":  # hydra_string_free: the address we got, as is
        return c_void_p
    if ctype in ("void *",) or re.fullmatch(r"(const )?struct \w+ \*", ctype):
        return c_void_p
    if ctype == "char **" or re.fullmatch(r"struct \w+ \*\*", ctype):
        return POINTER(c_void_p)
    pointee = ctype[:-2] if ctype.endswith(" *") else None
    if pointee in scalars:
        return POINTER(scalars[pointee])
    if re.fullmatch(r"hydra_\w+_callback", ctype):
        return getattr(n, ctype)
    raise AssertionError(f"no ctypes mapping for C type {ctype!r}")


def _functions():
    _, statements = _statements()
    functions = {}
    for s in statements:
        if s.startswith("typedef"):
            continue
        match = re.match(r"^(.*?)\b(hydra_\w+)\s*\((.*)\)$", s)
        if match:
            functions[match.group(2)] = (_norm(match.group(1)), _split_params(match.group(3)))
    return functions


def _callback_typedefs():
    _, statements = _statements()
    found = {}
    for s in statements:
        match = re.match(r"^typedef (.*?)\(\s*\*\s*(hydra_\w+)\)\s*\((.*)\)$", s)
        if match:
            found[match.group(2)] = (_norm(match.group(1)), _split_params(match.group(3)))
    return found


FUNCTIONS = _functions()


def test_header_parses_into_the_whole_abi():
    # A sanity floor, so a broken parser cannot make the checks below vacuous.
    assert len(FUNCTIONS) >= 55, sorted(FUNCTIONS)
    assert {"hydra_new", "hydra_request", "hydra_serve_http", "hydra_log_set_callback"} <= set(FUNCTIONS)
    assert len(_callback_typedefs()) == 5


def test_every_header_function_is_bound():
    missing = sorted(set(FUNCTIONS) - set(n.SIGNATURES))
    assert not missing, f"functions of include/hydra.h without a binding in hydra_rs/_native.py: {missing}"
    stale = sorted(set(n.SIGNATURES) - set(FUNCTIONS))
    assert not stale, f"bindings of functions include/hydra.h does not declare: {stale}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_binding_types_match_the_header(name):
    c_result, c_params = FUNCTIONS[name]
    restype, argtypes = n.SIGNATURES[name]
    assert restype is _expected(c_result, "result"), f"{name}: result {c_result!r} declared as {restype}"
    assert len(argtypes) == len(c_params), f"{name}: {len(c_params)} parameters, {len(argtypes)} argtypes"
    for i, (param, declared) in enumerate(zip(c_params, argtypes)):
        want = _expected(_param_type(param), "param")
        assert declared is want, f"{name}: parameter {i} `{param}` declared as {declared}, expected {want}"
    # And the loaded function carries them.
    function = getattr(n.lib, name)
    assert function.restype is restype and list(function.argtypes) == list(argtypes)


@pytest.mark.parametrize("name", sorted(_callback_typedefs()))
def test_callback_types_match_the_header(name):
    c_result, c_params = _callback_typedefs()[name]
    cfunc = getattr(n, name)
    assert cfunc._restype_ is _expected(c_result, "result")
    assert [_expected(_param_type(p), "param") for p in c_params] == list(cfunc._argtypes_)


def test_constants_and_exceptions_match_the_header():
    defines, _ = _statements()
    assert len(defines) >= 19
    for name, value in defines.items():
        assert getattr(n, name) == int(value), name
    statuses = {int(v) for k, v in defines.items() if not k.startswith("HYDRA_LOG_")}
    assert statuses - {0} == set(errors.ERRORS), "one exception class per status code"
    for status, cls in errors.ERRORS.items():
        assert n.lib.hydra_status_name(status).decode() == [k for k, v in defines.items() if int(v) == status
                                                             and not k.startswith("HYDRA_LOG_")][0]
        assert issubclass(cls, hydra_rs.HydraError) and cls.status == status


def test_the_pythonic_layer_reaches_every_function():
    source = "\n".join(p.read_text() for p in PACKAGE.glob("*.py") if p.name != "_native.py")
    unused = sorted(f for f in FUNCTIONS if f not in C_ONLY and not re.search(rf"\blib\.{f}\(", source))
    assert not unused, f"hydra_rs does not use {unused}"


def test_library_is_the_one_asked_for():
    import os

    from conftest import INSTALLED

    expected = n.packaged_library() if INSTALLED else os.environ["HYDRA_RS_LIBRARY"]
    assert os.path.samefile(n.lib._name, expected)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", hydra_rs.version())


def test_library_is_found_without_the_env_var(monkeypatch):
    from conftest import INSTALLED

    monkeypatch.delenv(n.LIBRARY_ENV, raising=False)
    if n.packaged_library().is_file():
        # pip install (or an editable install) put it inside the package.
        assert Path(n.find_library()) == n.packaged_library() and n.packaged_library().parent == PACKAGE
    else:
        # A source checkout has no packaged library: the error says how to get one.
        assert not INSTALLED, f"the installed package lacks {n.LIBRARY_NAME}"
        with pytest.raises(OSError, match=r"pip install \./ffi/python.*HYDRA_RS_LIBRARY"):
            n.find_library()
    monkeypatch.setenv(n.LIBRARY_ENV, "/nonexistent/libhydra_ffi.so")
    with pytest.raises(OSError, match="HYDRA_RS_LIBRARY"):
        n.find_library()
