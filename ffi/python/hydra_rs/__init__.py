"""hydra-rs from Python: Hydra (Redis-backed service discovery, presence,
messaging, HTTP and queues), wire-compatible with Node ``hydra`` 1.9.x,
through the C ABI of hydra-rs (``libhydra_ffi``) and ctypes.

::

    from hydra_rs import Hydra

    with Hydra({"hydra": {"serviceName": "greeter", "redis": {"url": "redis://127.0.0.1:6379/15"}}}) as h:
        @h.on_message
        def greet(message):
            return {"hello": message["body"].get("name")}   # the reply's body

        @h.route("GET", "/v1/greeter/:name")
        def hello(request):
            return {"hello": request.params["name"]}       # Hydra's 200 envelope

        h.register_service()
        h.serve_http()
        reply = h.request("billing:/", {"invoice": 7}, timeout=2.0)

The library is found through ``$HYDRA_RS_LIBRARY``, next to this package, or
in the ``target/{debug,release}`` directory of the workspace (see
:func:`hydra_rs._native.find_library`).
"""

from . import _native as native
from .errors import (
    BadRequestError,
    CallbackFailedError,
    HydraError,
    InvalidConfigError,
    InvalidHandleError,
    InvalidStateError,
    InvalidUtf8Error,
    MalformedError,
    PermissionDeniedError,
    NotFoundError,
    NullArgumentError,
    PanicError,
    RedisError,
    ServiceUnavailableError,
    TimeoutError,
    status_name,
)
from .hydra import (
    HttpRequest,
    HttpResponse,
    Hydra,
    QueuedMessage,
    QueueWorker,
    forward_logs,
    version,
)

__all__ = [
    "BadRequestError",
    "CallbackFailedError",
    "HttpRequest",
    "HttpResponse",
    "Hydra",
    "HydraError",
    "InvalidConfigError",
    "InvalidHandleError",
    "InvalidStateError",
    "InvalidUtf8Error",
    "MalformedError",
    "PermissionDeniedError",
    "NotFoundError",
    "NullArgumentError",
    "PanicError",
    "QueueWorker",
    "QueuedMessage",
    "RedisError",
    "ServiceUnavailableError",
    "TimeoutError",
    "forward_logs",
    "native",
    "status_name",
    "version",
]
