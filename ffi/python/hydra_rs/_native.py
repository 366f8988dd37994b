"""The C ABI of hydra-rs through ctypes: finding the library, and a declared
signature (``restype`` and ``argtypes``) for every ``hydra_*`` function of
``include/hydra.h``.

Nothing here is Pythonic on purpose: it is a one-to-one image of the header,
checked against it by ``tests/test_bindings.py``. The Pythonic layer is
``hydra_rs.hydra``.

Conventions of the image:

- ``const char *`` arguments are ``c_char_p`` (Python passes ``bytes`` or
  ``None`` for NULL); ``const uint8_t *`` too (bytes with a length).
- Handles (``hydra *``, ``hydra_http_response *``, ...) are ``c_void_p``.
- ``char **out_*`` is ``POINTER(c_void_p)``: the library's string comes back
  as an address, so it can be read *and* released with ``hydra_string_free``
  (a ``c_char_p`` would copy it to ``bytes`` and lose the address).
- ``const char *`` results (static strings) are ``c_char_p``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char_p,
    c_int32,
    c_size_t,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: Environment variable naming the shared library to load (a file path).
LIBRARY_ENV = "HYDRA_RS_LIBRARY"

if sys.platform == "darwin":
    LIBRARY_NAME = "libhydra_ffi.dylib"
elif sys.platform == "win32":
    LIBRARY_NAME = "hydra_ffi.dll"
else:
    LIBRARY_NAME = "libhydra_ffi.so"

# Status codes (HYDRA_* in hydra.h).
HYDRA_OK = 0
HYDRA_INVALID_CONFIG = 1
HYDRA_BAD_REQUEST = 2
HYDRA_REDIS = 3
HYDRA_NOT_FOUND = 4
HYDRA_SERVICE_UNAVAILABLE = 5
HYDRA_TIMEOUT = 6
HYDRA_INVALID_STATE = 7
HYDRA_MALFORMED = 8
HYDRA_PERMISSION_DENIED = 9
HYDRA_NULL_ARGUMENT = 100
HYDRA_INVALID_UTF8 = 101
HYDRA_INVALID_HANDLE = 102
HYDRA_PANIC = 103
HYDRA_CALLBACK_FAILED = 104

# Log levels (hydra_log_set_callback).
HYDRA_LOG_OFF = 0
HYDRA_LOG_ERROR = 1
HYDRA_LOG_WARN = 2
HYDRA_LOG_INFO = 3
HYDRA_LOG_DEBUG = 4
HYDRA_LOG_TRACE = 5

# Callback types (typedefs in hydra.h). Pointers arrive as int (or None for
# NULL), strings as bytes copied from the borrowed C string.
hydra_message_callback = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_char_p)
hydra_free_callback = CFUNCTYPE(None, c_void_p)
hydra_http_callback = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_char_p, c_void_p)
hydra_queue_callback = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_char_p)
hydra_log_callback = CFUNCTYPE(None, c_void_p, c_int32, c_char_p, c_char_p)

_out_str = POINTER(c_void_p)  # char **
_out_handle = POINTER(c_void_p)  # struct x **

#: name -> (restype, argtypes), in header order.
SIGNATURES: Dict[str, Tuple[object, List[object]]] = {
    "hydra_last_error_message": (c_char_p, []),
    "hydra_set_last_error_message": (c_int32, [c_char_p]),
    "hydra_status_name": (c_char_p, [c_int32]),
    "hydra_version": (c_char_p, []),
    "hydra_string_free": (None, [c_void_p]),
    "hydra_json_get": (c_int32, [c_char_p, c_char_p, _out_str]),
    "hydra_json_get_string": (c_int32, [c_char_p, c_char_p, _out_str]),
    "hydra_new": (c_int32, [c_char_p, _out_handle]),
    "hydra_new_with_name": (c_int32, [c_char_p, _out_handle]),
    "hydra_free": (None, [c_void_p]),
    "hydra_register_service": (c_int32, [c_void_p, _out_str]),
    "hydra_shutdown": (c_int32, [c_void_p]),
    "hydra_is_registered": (c_int32, [c_void_p, POINTER(c_bool)]),
    "hydra_get_service_info": (c_int32, [c_void_p, _out_str]),
    "hydra_get_service_name": (c_int32, [c_void_p, _out_str]),
    "hydra_get_instance_id": (c_int32, [c_void_p, _out_str]),
    "hydra_get_services": (c_int32, [c_void_p, _out_str]),
    "hydra_get_service_nodes": (c_int32, [c_void_p, _out_str]),
    "hydra_find_service": (c_int32, [c_void_p, c_char_p, _out_str]),
    "hydra_get_service_presence": (c_int32, [c_void_p, c_char_p, _out_str]),
    "hydra_has_service_presence": (c_int32, [c_void_p, c_char_p, POINTER(c_bool)]),
    "hydra_clear_stale_nodes": (c_int32, [c_void_p, c_uint64, POINTER(c_uint64)]),
    "hydra_get_health": (c_int32, [c_void_p, _out_str]),
    "hydra_send_to_health_log": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "hydra_get_service_health_log": (c_int32, [c_void_p, c_char_p, _out_str]),
    "hydra_get_service_health_all": (c_int32, [c_void_p, _out_str]),
    "hydra_put_config": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "hydra_get_config": (c_int32, [c_void_p, c_char_p, _out_str]),
    "hydra_list_config": (c_int32, [c_void_p, c_char_p, _out_str]),
    "hydra_create_umf_message": (c_int32, [c_void_p, c_char_p, c_char_p, _out_str]),
    "hydra_send_message": (c_int32, [c_void_p, c_char_p]),
    "hydra_send_broadcast_message": (c_int32, [c_void_p, c_char_p]),
    "hydra_send_reply_message": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "hydra_reply": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "hydra_request": (c_int32, [c_void_p, c_char_p, c_uint64, _out_str]),
    "hydra_on_message": (
        c_int32,
        [c_void_p, hydra_message_callback, c_void_p, hydra_free_callback],
    ),
    "hydra_receive_message": (c_int32, [c_void_p, c_uint64, _out_str]),
    "hydra_message_stats": (c_int32, [c_void_p, _out_str]),
    "hydra_make_api_request": (c_int32, [c_void_p, c_char_p, c_char_p, _out_str]),
    "hydra_serve_http": (
        c_int32,
        [
            c_void_p,
            c_char_p,
            c_char_p,
            hydra_http_callback,
            c_void_p,
            hydra_free_callback,
            POINTER(c_uint16),
        ],
    ),
    "hydra_http_response_send": (c_int32, [c_void_p, c_uint16, c_char_p]),
    "hydra_http_response_set": (c_int32, [c_void_p, c_uint16, c_char_p, c_char_p, c_size_t]),
    "hydra_http_response_add_header": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "hydra_http_stats": (c_int32, [c_void_p, _out_str]),
    "hydra_register_routes": (c_int32, [c_void_p, c_char_p]),
    "hydra_get_all_service_routes": (c_int32, [c_void_p, _out_str]),
    "hydra_match_route": (c_int32, [c_void_p, c_char_p, POINTER(c_bool)]),
    "hydra_queue_message": (c_int32, [c_void_p, c_char_p]),
    "hydra_get_queued_message": (c_int32, [c_void_p, c_char_p, c_uint64, _out_handle]),
    "hydra_queued_message_json": (c_int32, [c_void_p, _out_str]),
    "hydra_mark_queue_message": (
        c_int32,
        [c_void_p, c_void_p, c_bool, c_char_p, POINTER(c_bool)],
    ),
    "hydra_queued_message_free": (None, [c_void_p]),
    "hydra_queue_stats": (c_int32, [c_void_p, c_char_p, _out_str]),
    "hydra_redrive_dead_letters": (c_int32, [c_void_p, c_char_p, POINTER(c_uint64)]),
    "hydra_queue_worker_new": (
        c_int32,
        [
            c_void_p,
            c_char_p,
            c_uint32,
            c_char_p,
            hydra_queue_callback,
            c_void_p,
            hydra_free_callback,
            _out_handle,
        ],
    ),
    "hydra_queue_worker_stop": (c_int32, [c_void_p]),
    "hydra_queue_worker_stats": (c_int32, [c_void_p, _out_str]),
    "hydra_queue_worker_free": (None, [c_void_p]),
    "hydra_log_set_callback": (
        c_int32,
        [c_int32, hydra_log_callback, c_void_p, hydra_free_callback],
    ),
}


def packaged_library() -> Path:
    """Where ``pip install`` puts the library: next to this module."""
    return Path(__file__).resolve().parent / LIBRARY_NAME


def find_library() -> str:
    """The path of the hydra-rs shared library: ``$HYDRA_RS_LIBRARY`` if set
    (it must exist; for development against a cargo build), else the one
    installed inside this package."""
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        if not Path(explicit).is_file():
            raise OSError(f"{LIBRARY_ENV}={explicit!r}: no such file")
        return explicit
    packaged = packaged_library()
    if packaged.is_file():
        return str(packaged)
    raise OSError(
        f"{LIBRARY_NAME} is not installed with hydra_rs ({packaged.parent}): install the package with "
        f"`pip install ./ffi/python` (it builds the library with cargo), or, for development, build it "
        f"with `cargo build -p hydra-ffi` and set {LIBRARY_ENV} to target/debug/{LIBRARY_NAME}"
    )


def load(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads the library and declares every function of :data:`SIGNATURES`.
    A missing symbol is an error: the library and this package disagree."""
    lib = ctypes.CDLL(path or find_library())
    missing = []
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        function.restype = restype
        function.argtypes = argtypes
    if missing:
        raise OSError(f"{lib._name} lacks {', '.join(missing)}: rebuild it (cargo build -p hydra-ffi)")
    return lib


lib = load()
