"""Exceptions: one class per status code of the C ABI, each carrying the
library's own message (``hydra_last_error_message``)."""

from __future__ import annotations

import builtins
from typing import Dict, Type

from . import _native as n


class HydraError(Exception):
    """A hydra-rs call failed. ``status`` is the C status code, ``name`` its
    C name (``"HYDRA_NOT_FOUND"``), ``message`` the library's explanation."""

    status: int = -1

    def __init__(self, message: str, status: "int | None" = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message

    @property
    def name(self) -> str:
        return status_name(self.status)

    def __str__(self) -> str:
        return f"{self.message} ({self.name})" if self.message else self.name


class InvalidConfigError(HydraError):
    """``HYDRA_INVALID_CONFIG``: a configuration value is invalid."""

    status = n.HYDRA_INVALID_CONFIG


class BadRequestError(HydraError, ValueError):
    """``HYDRA_BAD_REQUEST``: an argument is invalid (bad JSON, bad route...)."""

    status = n.HYDRA_BAD_REQUEST


class RedisError(HydraError, ConnectionError):
    """``HYDRA_REDIS``: Redis could not be reached or answered with an error."""

    status = n.HYDRA_REDIS


class NotFoundError(HydraError, LookupError):
    """``HYDRA_NOT_FOUND``: the thing asked for does not exist."""

    status = n.HYDRA_NOT_FOUND


class ServiceUnavailableError(HydraError):
    """``HYDRA_SERVICE_UNAVAILABLE``: no instance can serve the call."""

    status = n.HYDRA_SERVICE_UNAVAILABLE


class TimeoutError(HydraError, builtins.TimeoutError):  # noqa: A001 - hydra_rs.TimeoutError
    """``HYDRA_TIMEOUT``: a deadline passed (e.g. no reply in time). Also a
    builtin ``TimeoutError``."""

    status = n.HYDRA_TIMEOUT


class InvalidStateError(HydraError):
    """``HYDRA_INVALID_STATE``: not registered, already registered, or shut down."""

    status = n.HYDRA_INVALID_STATE


class MalformedError(HydraError):
    """``HYDRA_MALFORMED``: data read from Redis is not what Hydra writes."""

    status = n.HYDRA_MALFORMED


class PermissionDeniedError(HydraError, PermissionError):
    """``HYDRA_PERMISSION_DENIED``: the Redis user lacks an ACL permission the
    call needs (the message names the command and key). Also a builtin
    ``PermissionError``."""

    status = n.HYDRA_PERMISSION_DENIED


class NullArgumentError(HydraError, TypeError):
    """``HYDRA_NULL_ARGUMENT``: a required argument was ``None`` (NULL)."""

    status = n.HYDRA_NULL_ARGUMENT


class InvalidUtf8Error(HydraError, ValueError):
    """``HYDRA_INVALID_UTF8``: a ``bytes`` argument is not valid UTF-8."""

    status = n.HYDRA_INVALID_UTF8


class InvalidHandleError(HydraError):
    """``HYDRA_INVALID_HANDLE``: the object was closed (freed) already."""

    status = n.HYDRA_INVALID_HANDLE


class PanicError(HydraError):
    """``HYDRA_PANIC``: the library panicked inside the call (and lives on)."""

    status = n.HYDRA_PANIC


class CallbackFailedError(HydraError):
    """``HYDRA_CALLBACK_FAILED``: what a callback returns when it fails (the
    library's functions never do); the trampolines return it for every
    exception a handler raises."""

    status = n.HYDRA_CALLBACK_FAILED


#: Status code -> exception class.
ERRORS: Dict[int, Type[HydraError]] = {
    cls.status: cls
    for cls in (
        InvalidConfigError,
        BadRequestError,
        RedisError,
        NotFoundError,
        ServiceUnavailableError,
        TimeoutError,
        InvalidStateError,
        MalformedError,
        PermissionDeniedError,
        NullArgumentError,
        InvalidUtf8Error,
        InvalidHandleError,
        PanicError,
        CallbackFailedError,
    )
}


def status_name(status: int) -> str:
    """The C name of a status code, ``"HYDRA_UNKNOWN_STATUS"`` if unknown."""
    return n.lib.hydra_status_name(status).decode()


def error_for(status: int, message: str) -> HydraError:
    """The exception for ``status`` (a plain :class:`HydraError` if unknown)."""
    cls = ERRORS.get(status)
    return cls(message) if cls else HydraError(message, status)


def check(status: int) -> None:
    """Raises the exception for ``status`` with this thread's last error
    message, unless it is ``HYDRA_OK``. Call it right after the failing call,
    on the same thread, before any other library call."""
    if status != n.HYDRA_OK:
        message = n.lib.hydra_last_error_message().decode("utf-8", "replace")
        raise error_for(status, message)
