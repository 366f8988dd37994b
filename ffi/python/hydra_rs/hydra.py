"""The Pythonic surface of hydra-rs: :class:`Hydra` and its companions.

Arguments follow three rules throughout:

- a *message* is a ``dict`` (a UMF message in long or short form: ``to``,
  ``body``, ...; ``from``, ``mid`` and ``timestamp`` are filled in when
  missing), or a route ``str`` such as ``"billing:/"`` together with a
  ``body``, or ``bytes`` holding the JSON text as is;
- other text arguments are ``str`` (``bytes`` are passed through unchanged, so
  they must be UTF-8); ``None`` where the C function takes NULL;
- timeouts are seconds (``float``).

Results are plain ``dict`` / ``list`` / ``str`` / ``int`` / ``bool`` values
decoded from the library's JSON. Failures raise the :mod:`hydra_rs.errors`
exception of the library's status code, with its message.

Callbacks (message handlers, HTTP routes, queue workers, log forwarding) run
on the library's threads. Every one goes through a trampoline that catches
every exception: it is logged (logger ``hydra_rs``) and turned into an error
reply, a 500 answer or an incomplete queue item, never into a success; the
library gets ``HYDRA_CALLBACK_FAILED`` and ``"<ExceptionType>: <text>"`` as the
reason (``hydra_set_last_error_message``). The
Python objects behind a callback stay alive as long as the library may call
them, and are released when the library runs its ``free_user_data``
finalizer.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import itertools
import json
import logging
import warnings
import weakref
from ctypes import byref, c_bool, c_uint16, c_uint64, c_void_p
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, TypeVar, Union

from . import _native as n
from .errors import check

lib = n.lib
log = logging.getLogger("hydra_rs")

Message = Union[Mapping[str, Any], str, bytes]
_Self = TypeVar("_Self", bound="_Owned")

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_UINT64_MAX = 2**64 - 1


# ---------------------------------------------------------------------------
# Arguments in, results out
# ---------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return _encoder.encode(value).encode("utf-8")


def _text(value: Union[str, bytes, bytearray, memoryview, None], name: str) -> Optional[bytes]:
    """A C string argument: UTF-8 bytes without NUL, or None for NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise TypeError(f"argument {name} must be str or bytes, not {type(value).__name__}")
    if b"\0" in data:
        # ctypes would silently cut the string there.
        raise ValueError(f"argument {name} contains a NUL character (at byte {data.index(0)})")
    return data


def _json_text(value: Any, name: str) -> Optional[bytes]:
    """A JSON document argument: bytes pass as they are (JSON text), None is
    NULL, anything else is encoded."""
    if value is None or isinstance(value, (bytes, bytearray, memoryview)):
        return _text(value, name)
    return _dumps(value)


def _message(message: Message, body: Any, name: str = "message") -> Optional[bytes]:
    if isinstance(message, str):
        return _dumps({"to": message, "body": {} if body is None else body})
    if body is not None:
        raise TypeError(f"give the body inside the {name}, or give a route string and a body")
    if isinstance(message, Mapping):
        return _dumps(dict(message))
    return _text(message, name)


def _millis(seconds: Optional[float], name: str = "timeout") -> int:
    if seconds is None:
        return 0
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {seconds!r}")
    return min(int(round(seconds * 1000)), _UINT64_MAX)


def _take(out: c_void_p) -> bytes:
    """The library's string at ``out``, released."""
    try:
        return ctypes.string_at(out.value or 0)
    finally:
        lib.hydra_string_free(out)


def _json_out(call: Callable[[Any], int]) -> Any:
    out = c_void_p()
    check(call(byref(out)))
    return json.loads(_take(out))


def _str_out(call: Callable[[Any], int]) -> str:
    out = c_void_p()
    check(call(byref(out)))
    return _take(out).decode("utf-8")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


# ---------------------------------------------------------------------------
# Callbacks: what the library holds, trampolines, finalizer
# ---------------------------------------------------------------------------


class _Callbacks:
    """The Python objects behind every ``user_data`` the library holds, by key.

    ``user_data`` is a small integer key, not a Python pointer: the library
    never sees a Python object, and a key whose finalizer ran is simply gone.
    """

    def __init__(self) -> None:
        self._items: Dict[int, Any] = {}
        self._keys = itertools.count(1)

    def add(self, item: Any) -> int:
        key = next(self._keys)
        self._items[key] = item
        return key

    def get(self, key: Optional[int]) -> Any:
        return self._items.get(key or 0)

    def discard(self, key: Optional[int]) -> None:
        self._items.pop(key or 0, None)

    def __len__(self) -> int:
        return len(self._items)

    def kinds(self) -> List[str]:
        """What is held, for tests and debugging."""
        return sorted(type(item).__name__ for item in list(self._items.values()))


#: Everything the library may still call back with.
callbacks = _Callbacks()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failed(error: BaseException) -> int:
    """What a trampoline returns for an exception: ``HYDRA_CALLBACK_FAILED``,
    with the exception's text as this thread's last error message, which the
    library passes on as the reason (dead-letter reason, HTTP 500
    ``result.reason``, the logged message-handler failure). Call it last: any
    library call after it on this thread replaces the message."""
    try:
        try:
            text = _describe(error)
        except BaseException:  # a __str__ that raises
            text = type(error).__name__
        lib.hydra_set_last_error_message(text.replace("\0", "\\0").encode("utf-8", "replace"))
    except BaseException:
        pass  # never let an exception escape: ctypes would return 0 (HYDRA_OK)
    return n.HYDRA_CALLBACK_FAILED


@n.hydra_free_callback
def _free_user_data(user_data: Optional[int]) -> None:
    try:
        callbacks.discard(user_data)
    except BaseException:  # pragma: no cover - dict.pop does not raise
        pass


class _MessageHandler:
    def __init__(self, handler: Callable[[Dict[str, Any]], Any]):
        self.handler = handler


def _error_reply(error: BaseException) -> bytes:
    """The body of the reply to a message whose handler raised: Hydra's error
    envelope (as hydra-express answers a failed request)."""
    return _dumps(
        {
            "statusCode": 500,
            "statusMessage": "Internal Server Error",
            "statusDescription": "The message handler failed.",
            "result": {"reason": f"message handler raised {_describe(error)}"},
        }
    )


@n.hydra_message_callback
def _on_message(user_data: Optional[int], hydra_ptr: Optional[int], message_json: bytes) -> int:
    message: Any = None
    try:
        entry = callbacks.get(user_data)
        message = json.loads(message_json)
        result = entry.handler(message)
        if result is None or message.get("rmid"):
            # Nothing to send, or a reply: answering replies would ping-pong.
            return n.HYDRA_OK
        status = lib.hydra_reply(hydra_ptr, message_json, _dumps(result))
        if status != n.HYDRA_OK:
            log.error(
                "could not send the reply of the message handler to %s: %s",
                message.get("mid"),
                lib.hydra_last_error_message().decode("utf-8", "replace"),
            )
        return status
    except BaseException as error:
        try:
            mid = message.get("mid") if isinstance(message, dict) else None
            log.error("message handler raised on %s", mid, exc_info=error)
            if isinstance(message, dict) and not message.get("rmid"):
                # Not a reply itself: the sender learns that it failed.
                if lib.hydra_reply(hydra_ptr, message_json, _error_reply(error)) != n.HYDRA_OK:
                    log.error(
                        "could not send the error reply to %s: %s",
                        mid,
                        lib.hydra_last_error_message().decode("utf-8", "replace"),
                    )
        except BaseException:
            pass
        # After the error reply: its call would replace the message.
        return _failed(error)


class HttpRequest:
    """One HTTP request served by a route: ``route`` (``"[get]/v1/x/:id"``),
    ``method``, ``path``, ``query`` (the raw query string), ``params`` (the
    route's ``:params``), ``headers`` (names lowercased), ``body`` (text: a
    body that is not UTF-8 has each invalid sequence replaced with U+FFFD)
    and ``body_bytes`` (the exact bytes sent, for binary uploads: images,
    protobuf, gzip)."""

    __slots__ = ("route", "method", "path", "query", "params", "headers", "body", "body_bytes")

    def __init__(self, data: Mapping[str, Any]):
        self.route: str = data["route"]
        self.method: str = data["method"]
        self.path: str = data["path"]
        self.query: str = data.get("query") or ""
        self.params: Dict[str, str] = data.get("params") or {}
        self.headers: Dict[str, str] = data.get("headers") or {}
        self.body: str = data.get("body") or ""
        # The library adds "bodyBase64" only when the body is not UTF-8.
        encoded = data.get("bodyBase64")
        self.body_bytes: bytes = (
            base64.b64decode(encoded, validate=True) if encoded is not None else self.body.encode("utf-8")
        )

    @property
    def query_params(self) -> Dict[str, str]:
        """The query string as a dict (the last value of a repeated name)."""
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query, keep_blank_values=True))

    def json(self) -> Any:
        """The body parsed as JSON; None when it is empty."""
        return json.loads(self.body) if self.body.strip() else None

    def __repr__(self) -> str:
        return f"HttpRequest({self.method} {self.path!r}, route={self.route!r})"


class HttpResponse:
    """What a route returns when a plain result is not enough.

    ``HttpResponse(result, status=200)`` answers with Hydra's envelope
    (``{"statusCode", "statusMessage", "statusDescription", "result"}``);
    ``HttpResponse.raw(body, status, content_type)`` with the bytes as they
    are. Both take ``headers`` to add.
    """

    __slots__ = ("status", "result", "body", "content_type", "headers")

    def __init__(self, result: Any = None, status: int = 200, headers: Optional[Mapping[str, str]] = None):
        self.status = status
        self.result = result
        self.body: Optional[bytes] = None
        self.content_type: Optional[str] = None
        self.headers = dict(headers or {})

    @classmethod
    def raw(
        cls,
        body: Union[bytes, str],
        status: int = 200,
        content_type: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> "HttpResponse":
        response = cls(None, status, headers)
        response.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        response.content_type = content_type
        return response


def _http_status(status: Any) -> int:
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"HTTP status must be an int from 100 to 599, got {status!r}")
    return status


def _write_response(response_ptr: Optional[int], result: Any) -> int:
    headers: Mapping[str, str] = {}
    if isinstance(result, HttpResponse):
        status = _http_status(result.status)
        headers = result.headers
        if result.body is not None:
            body = result.body
            code = lib.hydra_http_response_set(
                response_ptr, status, _text(result.content_type, "content_type"), body, len(body)
            )
        else:
            code = lib.hydra_http_response_send(response_ptr, status, _dumps(result.result))
    elif isinstance(result, tuple) and len(result) == 2:
        code = lib.hydra_http_response_send(response_ptr, _http_status(result[0]), _dumps(result[1]))
    else:
        code = lib.hydra_http_response_send(response_ptr, 200, _dumps(result))
    check(code)
    for name, value in headers.items():
        check(lib.hydra_http_response_add_header(response_ptr, _text(name, "name"), _text(value, "value")))
    return n.HYDRA_OK


class _HttpRoutes:
    def __init__(self, routes: Dict[str, Callable[[HttpRequest], Any]]):
        self.routes = dict(routes)


@n.hydra_http_callback
def _on_http(user_data: Optional[int], hydra_ptr: Optional[int], request_json: bytes, response_ptr: Optional[int]) -> int:
    route = None
    try:
        entry = callbacks.get(user_data)
        request = HttpRequest(json.loads(request_json))
        route = request.route
        return _write_response(response_ptr, entry.routes[route](request))
    except BaseException as error:
        # The library answers 500 with Hydra's error envelope.
        try:
            log.error("HTTP route %s raised", route, exc_info=error)
        except BaseException:
            pass
        return _failed(error)


class _QueueHandler:
    def __init__(self, handler: Callable[[Dict[str, Any]], Any]):
        self.handler = handler


@n.hydra_queue_callback
def _on_queued(user_data: Optional[int], hydra_ptr: Optional[int], queued_json: bytes) -> int:
    try:
        entry = callbacks.get(user_data)
        entry.handler(json.loads(queued_json))
        return n.HYDRA_OK
    except BaseException as error:
        # Not completed: retried, then a dead letter.
        try:
            log.error("queue worker handler raised", exc_info=error)
        except BaseException:
            pass
        return _failed(error)


# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------

_TO_PY_LEVEL = {
    n.HYDRA_LOG_ERROR: logging.ERROR,
    n.HYDRA_LOG_WARN: logging.WARNING,
    n.HYDRA_LOG_INFO: logging.INFO,
    n.HYDRA_LOG_DEBUG: logging.DEBUG,
    n.HYDRA_LOG_TRACE: 5,
}


class _LogForwarder:
    pass


@n.hydra_log_callback
def _on_log(user_data: Optional[int], level: int, target: bytes, message: bytes) -> None:
    try:
        name = "hydra_rs.lib." + target.decode("utf-8", "replace").replace("::", ".")
        logging.getLogger(name).log(_TO_PY_LEVEL.get(level, logging.INFO), "%s", message.decode("utf-8", "replace"))
    except BaseException:
        pass


def forward_logs(level: Optional[int] = logging.INFO) -> None:
    """Sends the library's log records at ``level`` (a :mod:`logging` level)
    and above to Python's logging, to loggers named ``hydra_rs.lib.<module>``
    (``hydra_rs.lib.hydra.messaging``). ``None`` stops it. Process-wide; the
    records arrive on the library's ``hydra-log`` thread."""
    if level is None:
        check(lib.hydra_log_set_callback(n.HYDRA_LOG_OFF, n.hydra_log_callback(), None, n.hydra_free_callback()))
        return
    if level <= 5:
        max_level = n.HYDRA_LOG_TRACE
    elif level <= logging.DEBUG:
        max_level = n.HYDRA_LOG_DEBUG
    elif level <= logging.INFO:
        max_level = n.HYDRA_LOG_INFO
    elif level <= logging.WARNING:
        max_level = n.HYDRA_LOG_WARN
    else:
        max_level = n.HYDRA_LOG_ERROR
    key = callbacks.add(_LogForwarder())
    status = lib.hydra_log_set_callback(max_level, _on_log, key, _free_user_data)
    if status != n.HYDRA_OK:
        callbacks.discard(key)
        check(status)


# ---------------------------------------------------------------------------
# The objects
# ---------------------------------------------------------------------------

_live: "weakref.WeakSet[Any]" = weakref.WeakSet()


class _Owned:
    """An object owning a library handle, freed once by ``close()``."""

    _handle: Optional[int] = None
    _closed = True

    def _free(self, handle: Optional[int]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Releases the handle (idempotent). Later calls raise
        :class:`~hydra_rs.errors.InvalidHandleError`."""
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        self._free(self._handle)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:
            try:
                warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
                self.close()
            except BaseException:
                pass


class QueuedMessage(_Owned):
    """A message taken from a queue with :meth:`Hydra.get_queued_message`:
    ``message`` (long form), ``queue``, ``delivery_count``. Mark it with
    :meth:`mark`, or it stays in progress for good, as in Node."""

    def __init__(self, hydra: "Hydra", handle: int):
        self._hydra = hydra
        self._handle = handle
        self._closed = False
        _live.add(self)
        self.data: Dict[str, Any] = _json_out(lambda out: lib.hydra_queued_message_json(handle, out))

    @property
    def message(self) -> Dict[str, Any]:
        return self.data["message"]

    @property
    def body(self) -> Any:
        return self.data["message"].get("body")

    @property
    def queue(self) -> str:
        return self.data["queue"]

    @property
    def delivery_count(self) -> int:
        return self.data.get("deliveryCount", 1)

    def mark(self, completed: bool = True, reason: Optional[str] = None) -> bool:
        """Node's ``markQueueMessage``; True if it was still in progress."""
        return self._hydra.mark_queue_message(self, completed, reason)

    def _free(self, handle: Optional[int]) -> None:
        lib.hydra_queued_message_free(handle)

    def __repr__(self) -> str:
        return f"QueuedMessage(queue={self.data.get('queue')!r}, mid={self.message.get('mid')!r})"


class QueueWorker(_Owned):
    """A running queue worker (:meth:`Hydra.queue_worker`)."""

    def __init__(self, handle: int, service: str):
        self._handle = handle
        self._closed = False
        self.service = service
        _live.add(self)

    def stop(self) -> None:
        """Takes no more messages, lets running handlers finish (up to 5 s)
        and gives back what it still holds. Idempotent."""
        check(lib.hydra_queue_worker_stop(self._handle))

    def stats(self) -> Dict[str, int]:
        """``taken``, ``completed``, ``failed``, ``panicked``, ``retried``,
        ``dead_lettered``, ``lost``, ``requeued``, ``redis_errors``, ``reaper_passes``."""
        return _json_out(lambda out: lib.hydra_queue_worker_stats(self._handle, out))

    def _free(self, handle: Optional[int]) -> None:
        lib.hydra_queue_worker_free(handle)

    def __repr__(self) -> str:
        return f"QueueWorker({self.service!r}{', closed' if self._closed else ''})"


class Hydra(_Owned):
    """A Hydra service instance (Node's ``hydra`` object), connected to Redis.

    ``Hydra("billing")`` takes Redis from ``HYDRA_REDIS_URL`` (else Node's
    default ``redis://127.0.0.1:6379/15``); ``Hydra({"hydra": {...}})`` takes
    Node's config document. Use it as a context manager, or ``close()`` it:
    that shuts it down (deregisters) and releases it. Safe to use from many
    threads at once, including from its own handlers.
    """

    def __init__(self, config: Union[str, Mapping[str, Any], bytes, None]):
        out = c_void_p()
        if isinstance(config, str):
            status = lib.hydra_new_with_name(_text(config, "service_name"), byref(out))
        else:
            status = lib.hydra_new(_json_text(config, "config_json"), byref(out))
        check(status)
        self._handle = out.value
        self._closed = False
        self._routes: Dict[str, Callable[[HttpRequest], Any]] = {}
        self._serving = False
        _live.add(self)

    def _free(self, handle: Optional[int]) -> None:
        lib.hydra_free(handle)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"handle={self._handle:#x}"
        return f"Hydra({state})"

    # -- lifecycle ---------------------------------------------------------

    def register_service(self) -> Dict[str, Any]:
        """Makes this instance exist (Node's ``registerService``); returns
        ``{"serviceName", "serviceIP", "servicePort"}``."""
        return _json_out(lambda out: lib.hydra_register_service(self._handle, out))

    def shutdown(self) -> None:
        """Deregisters and stops (Node's ``shutdown``). Idempotent; the object
        stays usable for identity and counters until ``close()``."""
        check(lib.hydra_shutdown(self._handle))

    @property
    def is_registered(self) -> bool:
        flag = c_bool()
        check(lib.hydra_is_registered(self._handle, byref(flag)))
        return flag.value

    def get_service_info(self) -> Dict[str, Any]:
        """``{"serviceName", "serviceIP", "servicePort", "instanceID",
        "serviceVersion", "serviceType"}``."""
        return _json_out(lambda out: lib.hydra_get_service_info(self._handle, out))

    def get_service_name(self) -> str:
        return _str_out(lambda out: lib.hydra_get_service_name(self._handle, out))

    def get_instance_id(self) -> str:
        return _str_out(lambda out: lib.hydra_get_instance_id(self._handle, out))

    @property
    def service_name(self) -> str:
        return self.get_service_name()

    @property
    def instance_id(self) -> str:
        return self.get_instance_id()

    # -- discovery and health ----------------------------------------------

    def get_services(self) -> List[Dict[str, Any]]:
        return _json_out(lambda out: lib.hydra_get_services(self._handle, out))

    def get_service_nodes(self) -> List[Dict[str, Any]]:
        return _json_out(lambda out: lib.hydra_get_service_nodes(self._handle, out))

    def find_service(self, name: str) -> Dict[str, Any]:
        """The service's record; :class:`NotFoundError` when there is none."""
        return _json_out(lambda out: lib.hydra_find_service(self._handle, _text(name, "service_name"), out))

    def get_service_presence(self, name: str) -> List[Dict[str, Any]]:
        return _json_out(
            lambda out: lib.hydra_get_service_presence(self._handle, _text(name, "service_name"), out)
        )

    def has_service_presence(self, name: str) -> bool:
        flag = c_bool()
        check(lib.hydra_has_service_presence(self._handle, _text(name, "service_name"), byref(flag)))
        return flag.value

    def clear_stale_nodes(self, older_than: float) -> int:
        """Removes ``nodes`` entries of gone instances silent for longer than
        ``older_than`` seconds; returns how many."""
        removed = c_uint64()
        check(lib.hydra_clear_stale_nodes(self._handle, _millis(older_than, "older_than"), byref(removed)))
        return removed.value

    def get_health(self) -> Optional[Dict[str, Any]]:
        return _json_out(lambda out: lib.hydra_get_health(self._handle, out))

    def send_to_health_log(self, entry_type: str, message: str) -> None:
        check(
            lib.hydra_send_to_health_log(self._handle, _text(entry_type, "entry_type"), _text(message, "message"))
        )

    def get_service_health_log(self, name: str) -> List[Dict[str, Any]]:
        return _json_out(
            lambda out: lib.hydra_get_service_health_log(self._handle, _text(name, "service_name"), out)
        )

    def get_service_health_all(self) -> List[Dict[str, Any]]:
        return _json_out(lambda out: lib.hydra_get_service_health_all(self._handle, out))

    # -- config store --------------------------------------------------------

    def put_config(self, label: str, document: Any) -> None:
        """Stores ``document`` under ``"service:version"`` (Node's ``putConfig``)."""
        check(lib.hydra_put_config(self._handle, _text(label, "label"), _json_text(document, "document_json")))

    def get_config(self, label: str) -> Any:
        return _json_out(lambda out: lib.hydra_get_config(self._handle, _text(label, "label"), out))

    def list_config(self, service: str) -> List[str]:
        return _json_out(lambda out: lib.hydra_list_config(self._handle, _text(service, "service_name"), out))

    # -- messaging -----------------------------------------------------------

    def create_umf_message(self, to: str, body: Any = None) -> Dict[str, Any]:
        """A new message from this service to ``to``, long form, with a
        fresh ``mid`` and ``timestamp`` (Node's ``createUMFMessage``)."""
        return _json_out(
            lambda out: lib.hydra_create_umf_message(
                self._handle, _text(to, "to"), _dumps({} if body is None else body), out
            )
        )

    def send_message(self, message: Message, body: Any = None) -> None:
        """Sends to one instance: the one named in ``to`` or any present one."""
        check(lib.hydra_send_message(self._handle, _message(message, body)))

    def send_broadcast_message(self, message: Message, body: Any = None) -> None:
        """Sends to every instance of the service in ``to``."""
        check(lib.hydra_send_broadcast_message(self._handle, _message(message, body)))

    def send_reply_message(self, original: Message, response: Message) -> None:
        """Node's ``sendReplyMessage``: ``response`` (a message; ``to`` and
        ``from`` may be left out) as the reply to ``original``."""
        check(
            lib.hydra_send_reply_message(
                self._handle, _message(original, None, "original"), _message(response, None, "response")
            )
        )

    def reply(self, original: Message, body: Any) -> None:
        """Replies to ``original`` with a message whose body is ``body``."""
        check(lib.hydra_reply(self._handle, _message(original, None, "original"), _dumps(body)))

    def request(self, message: Message, body: Any = None, *, timeout: float = 5.0) -> Dict[str, Any]:
        """Sends ``message`` and waits up to ``timeout`` seconds for its reply,
        returned in long form (a dict). :class:`hydra_rs.TimeoutError` when
        none comes. The instance must be registered."""
        text = _message(message, body)
        out = c_void_p()
        check(lib.hydra_request(self._handle, text, _millis(timeout), byref(out)))
        return json.loads(_take(out))

    def on_message(self, handler: Callable[[Dict[str, Any]], Any]) -> Callable[[Dict[str, Any]], Any]:
        """Sets the message handler (Node's ``hydra.on('message')``), replacing
        any previous one; usable as a decorator. ``handler(message)`` gets the
        message in long form on a library worker thread; if it returns a value
        other than None, that value is sent as the body of the reply (unless
        the message is itself a reply, with ``rmid``: no ping-pong). If it
        raises, the exception is logged, the message counted as failed (and
        logged by the library with the exception's text), and a message that
        is not itself a reply is answered with Hydra's error envelope
        (``statusCode`` 500, ``result.reason``)."""
        if not callable(handler):
            raise TypeError("the message handler must be callable")
        key = callbacks.add(_MessageHandler(handler))
        status = lib.hydra_on_message(self._handle, _on_message, key, _free_user_data)
        if status != n.HYDRA_OK:
            callbacks.discard(key)
            check(status)
        return handler

    def receive_message(self, timeout: float = 0.0) -> Optional[Dict[str, Any]]:
        """The pull alternative to :meth:`on_message`: the next message, or
        None when none came within ``timeout`` seconds."""
        out = c_void_p()
        status = lib.hydra_receive_message(self._handle, _millis(timeout), byref(out))
        if status == n.HYDRA_TIMEOUT:
            return None
        check(status)
        return json.loads(_take(out))

    def message_stats(self) -> Dict[str, int]:
        """``received``, ``handled``, ``failed``, ``panicked``, ``invalid``,
        ``overflow``, ``read_pauses``, ``unhandled``, ``looped``,
        ``replies_matched``, ``replies_late``, ``sent``, ``subscriptions``,
        ``signature_rejected``, ``unsigned_accepted``."""
        return _json_out(lambda out: lib.hydra_message_stats(self._handle, out))

    # -- HTTP ----------------------------------------------------------------

    def make_api_request(
        self,
        message: Message,
        body: Any = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        balance: Optional[str] = None,
        max_response_bytes: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Calls a service's HTTP route (Node's ``makeAPIRequest``): ``to`` is
        ``"service:[get]/v1/path?query"``. Returns ``{"statusCode",
        "instanceID", "headers", "body"}``; any HTTP status is a result,
        :class:`ServiceUnavailableError` when no instance answered, and
        :class:`MalformedError` when the response body is larger than
        ``max_response_bytes`` (default 64 MiB).

        ``body`` is the parsed JSON for a JSON response, else the body as
        text. A body that is neither JSON nor UTF-8 (an image, protobuf,
        gzip) has each invalid sequence replaced with U+FFFD in that text,
        and its exact bytes in ``"bodyBase64"`` (standard base64, present
        only then): ``base64.b64decode(response["bodyBase64"])``."""
        if headers is not None:
            if isinstance(message, str):
                message = {"to": message, "body": {} if body is None else body}
                body = None
            elif isinstance(message, Mapping):
                message = dict(message)
            else:
                raise TypeError("headers need a message given as a route or a dict")
            message["headers"] = dict(headers)
        options: Dict[str, Any] = {}
        if timeout is not None:
            options["timeoutMs"] = _millis(timeout)
        if balance is not None:
            options["balance"] = balance
        if max_response_bytes is not None:
            options["maxResponseBytes"] = max_response_bytes
        text = _message(message, body)
        return _json_out(
            lambda out: lib.hydra_make_api_request(self._handle, text, _dumps(options) if options else None, out)
        )

    def route(self, method: str, path: str) -> Callable[[Callable[[HttpRequest], Any]], Callable[[HttpRequest], Any]]:
        """Decorator: serves ``method`` ``path`` (route-parser syntax:
        ``/v1/items/:id``) with the function, once :meth:`serve_http` runs.

        The function gets an :class:`HttpRequest` and returns the ``result``
        of Hydra's 200 envelope, a ``(status, result)`` tuple, or an
        :class:`HttpResponse`. If it raises, the exception is logged and the
        request answered 500 with Hydra's error envelope, whose
        ``result.reason`` carries the exception's type and text (so keep
        secrets out of exceptions a route may raise)."""

        def decorator(handler: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
            self.add_route(method, path, handler)
            return handler

        return decorator

    def add_route(self, method: str, path: str, handler: Callable[[HttpRequest], Any]) -> None:
        """The non-decorator form of :meth:`route`."""
        if self._serving:
            raise RuntimeError("routes must be added before serve_http()")
        if not callable(handler):
            raise TypeError("the route handler must be callable")
        if not isinstance(method, str) or not isinstance(path, str):
            raise TypeError("method and path must be str")
        self._routes[f"[{method.lower()}]{path}"] = handler

    def serve_http(self, **settings: Any) -> int:
        """Serves the routes added with :meth:`route` on the service port and
        registers them in Redis (as hydra-express does). Settings are the
        library's, in snake_case: ``max_body_bytes``, ``max_head_bytes``,
        ``max_url_bytes``, ``read_timeout_ms``, ``head_timeout_ms``,
        ``request_timeout_ms``, ``keep_alive_ms``, ``workers``,
        ``queue_capacity``, ``max_connections``, ``drain_timeout_ms``. Returns
        the port (the one published in presence). The server stops on
        shutdown, letting running requests finish (``drain_timeout_ms``)."""
        routes = dict(self._routes)
        key = callbacks.add(_HttpRoutes(routes))
        port = c_uint16()
        status = lib.hydra_serve_http(
            self._handle,
            _dumps(list(routes)),
            _dumps({_camel(k): v for k, v in settings.items()}) if settings else None,
            _on_http,
            key,
            _free_user_data,
            byref(port),
        )
        if status != n.HYDRA_OK:
            callbacks.discard(key)
            check(status)
        self._serving = True
        return port.value

    def http_stats(self) -> Dict[str, int]:
        """``connections``, ``requests``, ``rejected``, ``rejected_framing``,
        ``panicked``, ``overloaded``, ``timed_out``."""
        return _json_out(lambda out: lib.hydra_http_stats(self._handle, out))

    def register_routes(self, routes: Iterable[str]) -> None:
        """Stores ``["[get]/v1/x", ...]`` in Redis without serving them."""
        text = None if routes is None else _json_text(routes if isinstance(routes, bytes) else list(routes), "routes_json")
        check(lib.hydra_register_routes(self._handle, text))

    def get_all_service_routes(self) -> Dict[str, List[str]]:
        return _json_out(lambda out: lib.hydra_get_all_service_routes(self._handle, out))

    def match_route(self, route: str) -> bool:
        """Whether ``"[get]/v1/items/7"`` matches a route this instance registered."""
        flag = c_bool()
        check(lib.hydra_match_route(self._handle, _text(route, "route"), byref(flag)))
        return flag.value

    # -- queues --------------------------------------------------------------

    def queue_message(self, message: Message, body: Any = None) -> None:
        """Puts a message at the end of the queue of the service in its
        ``to`` (Node's ``queueMessage``)."""
        check(lib.hydra_queue_message(self._handle, _message(message, body)))

    def get_queued_message(self, service: str, timeout: float = 0.0) -> Optional[QueuedMessage]:
        """Takes the oldest message of ``service``'s queue, waiting up to
        ``timeout`` seconds; None when none came."""
        out = c_void_p()
        check(lib.hydra_get_queued_message(self._handle, _text(service, "service"), _millis(timeout), byref(out)))
        return QueuedMessage(self, out.value) if out.value else None

    def mark_queue_message(self, queued: QueuedMessage, completed: bool = True, reason: Optional[str] = None) -> bool:
        """Node's ``markQueueMessage``; True if it was still in progress."""
        was = c_bool()
        check(
            lib.hydra_mark_queue_message(
                self._handle, queued._handle, bool(completed), _text(reason, "reason"), byref(was)
            )
        )
        return was.value

    def queue_stats(self, service: str) -> Dict[str, Any]:
        """``waiting``, ``in_progress``, ``incomplete``, ``oldest_waiting_ms``, ``consumers``."""
        return _json_out(lambda out: lib.hydra_queue_stats(self._handle, _text(service, "service"), out))

    def redrive_dead_letters(self, service: str) -> int:
        """Moves every dead letter of ``service`` back into its queue; returns how many."""
        moved = c_uint64()
        check(lib.hydra_redrive_dead_letters(self._handle, _text(service, "service"), byref(moved)))
        return moved.value

    def queue_worker(
        self,
        service: str,
        handler: Callable[[Dict[str, Any]], Any],
        *,
        concurrency: int = 1,
        visibility_timeout: Optional[float] = None,
        max_deliveries: Optional[int] = None,
    ) -> QueueWorker:
        """Works ``service``'s queue on ``concurrency`` threads:
        ``handler({"message", "queue", "deliveryCount"})`` completes the
        message by returning; if it raises, the exception is logged and the
        delivery fails (retried, then a dead letter after ``max_deliveries``
        whose ``reason`` carries the exception's type and text)."""
        if not callable(handler):
            raise TypeError("the queue handler must be callable")
        if not isinstance(concurrency, int) or not 0 <= concurrency < 2**32:
            raise ValueError(f"concurrency must be a non-negative int, got {concurrency!r}")
        options: Dict[str, Any] = {}
        if visibility_timeout is not None:
            options["visibilityTimeoutMs"] = _millis(visibility_timeout, "visibility_timeout")
        if max_deliveries is not None:
            options["maxDeliveries"] = max_deliveries
        key = callbacks.add(_QueueHandler(handler))
        out = c_void_p()
        status = lib.hydra_queue_worker_new(
            self._handle,
            _text(service, "service"),
            concurrency,
            _dumps(options) if options else None,
            _on_queued,
            key,
            _free_user_data,
            byref(out),
        )
        if status != n.HYDRA_OK:
            callbacks.discard(key)
            check(status)
        assert out.value is not None, "the library returned HYDRA_OK without a worker"
        return QueueWorker(out.value, service)


def version() -> str:
    """The version of the loaded library."""
    return lib.hydra_version().decode()


@atexit.register
def _close_everything() -> None:
    # Library threads must not call into an interpreter that is finalizing:
    # stop log forwarding and release every live handle (which waits for
    # running callbacks) while Python still runs.
    try:
        lib.hydra_log_set_callback(n.HYDRA_LOG_OFF, n.hydra_log_callback(), None, n.hydra_free_callback())
    except BaseException:
        pass
    for obj in list(_live):
        try:
            obj.close()
        except BaseException:
            pass
