"""Hostile use from Python: None (NULL) and NUL, non-UTF-8 bytes, invalid JSON,
calls after shutdown and after close, double close, forged handles, and
callbacks that raise, block, or call back into the library (even closing
their own handle). Every case is an exception with the library's message or
a well-defined outcome; never a crash, a hang, or a silent success."""

import gc
import logging
import queue
import threading
import time
import weakref
from pathlib import Path

import pytest

import hydra_rs
from hydra_rs import _native as n
from hydra_rs.hydra import callbacks
from conftest import WAIT, config, wait_until


@pytest.fixture
def h(make_hydra):
    h = make_hydra("py-hostile")
    h.register_service()
    return h


# ---------------------------------------------------------------------------
# None / NUL / non-UTF-8 / invalid JSON
# ---------------------------------------------------------------------------

NONE_CASES = {
    "find_service": (lambda h: h.find_service(None), "service_name"),
    "get_service_presence": (lambda h: h.get_service_presence(None), "service_name"),
    "has_service_presence": (lambda h: h.has_service_presence(None), "service_name"),
    "send_to_health_log type": (lambda h: h.send_to_health_log(None, "m"), "entry_type"),
    "send_to_health_log message": (lambda h: h.send_to_health_log("info", None), "message"),
    "get_service_health_log": (lambda h: h.get_service_health_log(None), "service_name"),
    "put_config label": (lambda h: h.put_config(None, {}), "label"),
    "put_config document": (lambda h: h.put_config("a:1", None), "document_json"),
    "get_config": (lambda h: h.get_config(None), "label"),
    "list_config": (lambda h: h.list_config(None), "service_name"),
    "create_umf_message": (lambda h: h.create_umf_message(None, {}), "to"),
    "send_message": (lambda h: h.send_message(None), "message_json"),
    "send_broadcast_message": (lambda h: h.send_broadcast_message(None), "message_json"),
    "send_reply_message": (lambda h: h.send_reply_message(None, {"body": {}}), "original_json"),
    "reply": (lambda h: h.reply(None, {}), "original_json"),
    "request": (lambda h: h.request(None), "message_json"),
    "make_api_request": (lambda h: h.make_api_request(None), "message_json"),
    "match_route": (lambda h: h.match_route(None), "route"),
    "register_routes": (lambda h: h.register_routes(None), "routes_json"),
    "queue_message": (lambda h: h.queue_message(None), "message_json"),
    "get_queued_message": (lambda h: h.get_queued_message(None), "service"),
    "queue_stats": (lambda h: h.queue_stats(None), "service"),
    "redrive_dead_letters": (lambda h: h.redrive_dead_letters(None), "service"),
    "queue_worker": (lambda h: h.queue_worker(None, lambda item: None), "service"),
}


@pytest.mark.parametrize("case", sorted(NONE_CASES))
def test_none_is_a_null_argument_error_naming_the_argument(h, case):
    call, argument = NONE_CASES[case]
    with pytest.raises(hydra_rs.NullArgumentError, match=f"argument {argument} is NULL") as caught:
        call(h)
    assert caught.value.status == n.HYDRA_NULL_ARGUMENT
    assert caught.value.name == "HYDRA_NULL_ARGUMENT"


def test_none_config_and_null_handles_and_out_pointers(h):
    with pytest.raises(hydra_rs.NullArgumentError, match="config_json"):
        hydra_rs.Hydra(None)
    # The raw layer: a NULL handle, NULL out pointers.
    assert n.lib.hydra_shutdown(None) == n.HYDRA_NULL_ARGUMENT
    assert b"argument hydra is NULL" in n.lib.hydra_last_error_message()
    assert n.lib.hydra_get_services(h._handle, None) == n.HYDRA_NULL_ARGUMENT
    assert b"out_json" in n.lib.hydra_last_error_message()
    assert n.lib.hydra_on_message(h._handle, n.hydra_message_callback(), None, n.hydra_free_callback()) \
        == n.HYDRA_NULL_ARGUMENT
    n.lib.hydra_free(None)
    n.lib.hydra_string_free(None)
    n.lib.hydra_queued_message_free(None)
    n.lib.hydra_queue_worker_free(None)


@pytest.mark.parametrize("text", ["a\0b", b"a\0b"])
def test_nul_in_a_string_is_refused_before_ctypes_cuts_it(h, text):
    with pytest.raises(ValueError, match="service_name contains a NUL"):
        h.find_service(text)
    with pytest.raises(ValueError, match="NUL"):
        hydra_rs.Hydra(text if isinstance(text, str) else "x\0")
    with pytest.raises(ValueError, match="NUL"):
        h.send_message(b'{"to": "x:/"}\0junk')


def test_nul_inside_json_travels_intact(h, make_hydra):
    echo = make_hydra("py-nul-echo")
    echo.on_message(lambda m: m["body"])
    echo.register_service()
    reply = h.request("py-nul-echo:/", {"s": "a\0b", "k\0": 1}, timeout=WAIT)
    assert reply["body"] == {"s": "a\0b", "k\0": 1}


def test_non_utf8_bytes_are_invalid_utf8_errors(h):
    bad = b"a\xff\xfeb"
    with pytest.raises(hydra_rs.InvalidUtf8Error, match="service_name is not valid UTF-8"):
        h.find_service(bad)
    with pytest.raises(hydra_rs.InvalidUtf8Error, match="config_json"):
        hydra_rs.Hydra(bad)
    with pytest.raises(hydra_rs.InvalidUtf8Error, match="message_json"):
        h.send_message(b'{"to": "\xff:/", "body": {}}')
    with pytest.raises(hydra_rs.InvalidUtf8Error, match="route"):
        h.match_route(bad)
    with pytest.raises(hydra_rs.InvalidUtf8Error, match="message"):
        h.send_to_health_log("info", bad)
    # A str that cannot be UTF-8 at all (a lone surrogate) fails in Python.
    with pytest.raises(UnicodeEncodeError):
        h.find_service("\ud800")
    with pytest.raises(UnicodeEncodeError):
        h.send_message("x:/", {"s": "\udfff"})


def test_invalid_json_and_invalid_documents(h, redis_url):
    with pytest.raises(hydra_rs.InvalidConfigError, match="not valid JSON"):
        hydra_rs.Hydra(b"{not json")
    with pytest.raises(hydra_rs.InvalidConfigError, match="servicePort"):
        hydra_rs.Hydra(config("x", redis_url, servicePort="70000"))
    with pytest.raises(hydra_rs.InvalidConfigError, match="serviceName"):
        hydra_rs.Hydra(config("", redis_url))
    with pytest.raises(hydra_rs.InvalidConfigError, match="reserved"):
        hydra_rs.Hydra(config("hydra", redis_url))
    with pytest.raises(hydra_rs.BadRequestError, match="message_json is not valid JSON"):
        h.send_message(b"{nope")
    with pytest.raises(hydra_rs.BadRequestError, match="must be a JSON object"):
        h.send_message(b"[]")
    with pytest.raises(hydra_rs.BadRequestError, match='"to" must be a string'):
        h.send_message({"to": 5, "body": {}})
    with pytest.raises(hydra_rs.BadRequestError, match="document_json"):
        h.put_config("a:1", b"[")
    with pytest.raises(hydra_rs.BadRequestError):
        h.put_config("no-version", {})
    with pytest.raises(hydra_rs.BadRequestError, match="HTTP method not specified"):
        h.make_api_request("a:/x")
    with pytest.raises(hydra_rs.BadRequestError, match="balance"):
        h.make_api_request("a:[get]/x", balance="sideways")
    with pytest.raises(hydra_rs.BadRequestError, match="array of strings"):
        h.register_routes(b'{"a": 1}')
    with pytest.raises(hydra_rs.BadRequestError, match=r"\[method\]/path"):
        h.register_routes(["get /x"])
    # Values JSON cannot carry fail in Python, before the library.
    with pytest.raises(ValueError):
        h.send_message("x:/", {"nan": float("nan")})
    with pytest.raises(TypeError):
        h.send_message("x:/", {"set": {1, 2}})
    with pytest.raises(TypeError, match="body"):
        h.send_message({"to": "x:/"}, {"body": "twice"})


def test_unreachable_redis_is_a_redis_error(redis_url):
    started = time.monotonic()
    with pytest.raises(hydra_rs.RedisError):
        hydra_rs.Hydra({"hydra": {"serviceName": "nowhere", "redis": {"url": "redis://127.0.0.1:1/0"},
                                  "connectTimeout": 500}})
    assert time.monotonic() - started < 10


def test_forged_handles_and_bad_log_level():
    forged = 0x1231
    assert n.lib.hydra_shutdown(forged) == n.HYDRA_INVALID_HANDLE
    assert b"not a live hydra handle" in n.lib.hydra_last_error_message()
    n.lib.hydra_free(forged)
    assert n.lib.hydra_http_response_send(0x41, 200, b"{}") == n.HYDRA_INVALID_HANDLE
    assert n.lib.hydra_log_set_callback(9, n.hydra_log_callback(), None, n.hydra_free_callback()) \
        == n.HYDRA_BAD_REQUEST
    assert hydra_rs.status_name(-1) == "HYDRA_UNKNOWN_STATUS"
    assert hydra_rs.status_name(n.HYDRA_TIMEOUT) == "HYDRA_TIMEOUT"


# ---------------------------------------------------------------------------
# Lifecycle: after shutdown, after close, double close
# ---------------------------------------------------------------------------


def test_calls_after_shutdown(h):
    name, instance = h.service_name, h.instance_id
    assert h.is_registered
    with pytest.raises(hydra_rs.InvalidStateError, match="already registered"):
        h.register_service()
    h.shutdown()
    h.shutdown()  # idempotent
    assert not h.is_registered
    for call in (
        h.register_service,
        h.get_services,
        lambda: h.send_message("py-hostile:/", {}),
        lambda: h.request("py-hostile:/", {}, timeout=0.1),
        lambda: h.receive_message(0.01),
        h.serve_http,
        lambda: h.queue_message("py-hostile:/", {}),
    ):
        with pytest.raises(hydra_rs.InvalidStateError, match="shut down"):
            call()
    # Identity and counters still answer.
    assert (h.service_name, h.instance_id) == (name, instance)
    assert "received" in h.message_stats()
    assert h.get_service_info()["serviceName"] == name


def test_calls_after_close_and_double_close(make_hydra):
    h = make_hydra("py-closed")
    h.register_service()
    queued_owner = make_hydra("py-closed-q")
    queued_owner.queue_message("py-closed-q:/", {})
    queued = queued_owner.get_queued_message("py-closed-q")
    h.close()
    h.close()  # no-op
    assert h.closed
    for call in (h.shutdown, lambda: h.service_name, h.message_stats, lambda: h.on_message(print),
                 lambda: h.request("x:/", {})):
        with pytest.raises(hydra_rs.InvalidHandleError, match="already freed"):
            call()
    # The raw free of a freed handle only notes it.
    n.lib.hydra_free(h._handle)
    assert b"hydra_free" in n.lib.hydra_last_error_message()
    # A queued message outliving its Hydra.
    queued_owner.close()
    with pytest.raises(hydra_rs.InvalidHandleError):
        queued.mark()
    queued.close()
    queued.close()


def test_context_manager_closes_even_on_error(redis_url):
    with pytest.raises(KeyError):
        with hydra_rs.Hydra(config("py-ctx", redis_url)) as h:
            h.register_service()
            raise KeyError("inside")
    assert h.closed
    with hydra_rs.Hydra(config("py-ctx2", redis_url)) as probe:
        assert not probe.has_service_presence("py-ctx")


def test_unclosed_hydra_is_closed_by_the_garbage_collector(redis_url):
    h = hydra_rs.Hydra(config("py-leaked", redis_url))
    handle = h._handle
    h.on_message(lambda m: None)
    ref = weakref.ref(h)
    with pytest.warns(ResourceWarning):
        del h
        gc.collect()
    assert ref() is None
    assert n.lib.hydra_shutdown(handle) == n.HYDRA_INVALID_HANDLE
    wait_until(lambda: len(callbacks) == 0, what="the handler's finalizer")


def test_close_from_another_thread_while_requests_wait(make_hydra):
    silent = make_hydra("py-silent")
    silent.on_message(lambda m: time.sleep(0.2))  # never replies
    silent.register_service()
    h = make_hydra("py-waiter")
    h.register_service()
    errors = queue.Queue()

    def wait_for_reply():
        try:
            h.request("py-silent:/", {}, timeout=WAIT)
            errors.put(None)
        except hydra_rs.HydraError as error:
            errors.put(error)

    threads = [threading.Thread(target=wait_for_reply) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: silent.message_stats()["received"] == 4, what="4 requests out")
    started = time.monotonic()
    h.close()
    for t in threads:
        t.join(WAIT)
    assert time.monotonic() - started < WAIT / 2
    outcomes = [errors.get_nowait() for _ in range(4)]
    assert all(isinstance(e, (hydra_rs.InvalidStateError, hydra_rs.InvalidHandleError)) for e in outcomes), outcomes


# ---------------------------------------------------------------------------
# Callbacks: raise, block, call back, close their own handle; kept alive
# ---------------------------------------------------------------------------


def test_raising_message_handler_answers_with_an_error_reply(h, make_hydra, caplog):
    server = make_hydra("py-raiser")

    @server.on_message
    def handler(message):
        kind = message["body"]["kind"]
        if kind == "value":
            raise ValueError("bad value")
        if kind == "exit":
            raise SystemExit(3)  # even BaseException is caught
        if kind == "junk":
            return {"unserializable": object()}
        if kind == "library":
            server.find_service("missing-service")
        return {"fine": True}

    server.register_service()
    for kind, reason in [("value", "ValueError: bad value"), ("exit", "SystemExit: 3"),
                         ("junk", "TypeError"), ("library", "NotFoundError: Can't find missing-service")]:
        reply = h.request("py-raiser:/", {"kind": kind}, timeout=WAIT)
        assert reply["body"]["statusCode"] == 500, kind
        assert reason in reply["body"]["result"]["reason"], (kind, reply)
    assert h.request("py-raiser:/", {"kind": "ok"}, timeout=WAIT)["body"] == {"fine": True}
    # Counted once each handler has returned (after its reply went out).
    # (each failure is counted after its trampoline returns, which may be
    # after the next request was answered by another worker).
    wait_until(
        lambda: (server.message_stats()["handled"], server.message_stats()["failed"]) == (1, 4),
        what="every message to be counted",
    )
    assert sum("message handler raised" in r.getMessage() for r in caplog.records) == 4


def test_a_raising_message_handler_gives_the_library_its_text(h, make_hydra):
    """The library logs the failed message with the exception's text (not just
    a status), and counts it as failed."""
    server = make_hydra("py-reasons")

    @server.on_message
    def handler(message):
        raise RuntimeError(f"the widget broke on {message['body']['n']} \u2713")

    server.register_service()
    records = queue.Queue()

    class Collect(logging.Handler):
        def emit(self, record):
            records.put(record.getMessage())

    logger = logging.getLogger("hydra_rs.lib")
    collect = Collect()
    logger.addHandler(collect)
    logger.setLevel(logging.WARNING)
    try:
        hydra_rs.forward_logs(logging.WARNING)
        reply = h.request("py-reasons:/", {"n": 7}, timeout=WAIT)
        assert reply["body"]["result"]["reason"] == "message handler raised RuntimeError: the widget broke on 7 \u2713"
        expected = "message callback returned HYDRA_CALLBACK_FAILED: RuntimeError: the widget broke on 7 \u2713"
        deadline = time.monotonic() + WAIT
        while True:
            text = records.get(timeout=max(0.01, deadline - time.monotonic()))
            if "message handler failed on" in text:
                assert text.endswith(expected), text
                break
    finally:
        hydra_rs.forward_logs(None)
        logger.removeHandler(collect)
    wait_until(lambda: server.message_stats()["failed"] == 1, what="the failure to be counted")


def test_set_last_error_message_directly():
    lib = n.lib
    assert lib.hydra_set_last_error_message("a reason \u2713".encode()) == n.HYDRA_OK
    assert lib.hydra_last_error_message().decode() == "a reason \u2713"
    assert lib.hydra_set_last_error_message(None) == n.HYDRA_OK
    assert lib.hydra_last_error_message() == b""
    assert lib.hydra_set_last_error_message(b"bad \xff") == n.HYDRA_INVALID_UTF8
    assert b"argument message is not valid UTF-8" in lib.hydra_last_error_message()
    assert hydra_rs.status_name(n.HYDRA_CALLBACK_FAILED) == "HYDRA_CALLBACK_FAILED"


def test_a_raising_handler_does_not_answer_replies(h, make_hydra):
    """No error reply to a message that is itself a reply: no ping-pong."""
    other = make_hydra("py-replier")
    other.on_message(lambda m: {"pong": True})
    other.register_service()
    got = queue.Queue()

    def handler(message):
        got.put(message)
        raise RuntimeError("do not answer me")

    h.on_message(handler)
    first = h.create_umf_message("py-replier:/", {"ping": 1})
    first["from"] = f"{h.instance_id}@py-hostile:/"
    h.send_message(first)
    reply = got.get(timeout=WAIT)
    assert reply["rmid"] == first["mid"]
    # Counted once the trampoline returned: an error reply would be out by now.
    wait_until(lambda: h.message_stats()["failed"] == 1, what="the raising handler to be counted")
    assert_nothing_more_reached(other, received=1, make_hydra=make_hydra)
    assert got.empty()


def test_handlers_stay_alive_without_references(h, make_hydra):
    """The classic ctypes pitfall: the handler is a temporary closure; the
    library keeps calling it after a garbage collection, until it is replaced
    or the handle closed, when its finalizer releases it."""
    server = make_hydra("py-kept")

    def install(tag):
        server.on_message(lambda m: {"tag": tag, "n": m["body"]["n"]})

    install("first")
    server.register_service()
    gc.collect()
    assert h.request("py-kept:/", {"n": 1}, timeout=WAIT)["body"] == {"tag": "first", "n": 1}
    before = len(callbacks)
    install("second")  # replaces: the first one's finalizer runs
    gc.collect()
    wait_until(lambda: len(callbacks) == before, what="the replaced handler's finalizer")
    assert h.request("py-kept:/", {"n": 2}, timeout=WAIT)["body"] == {"tag": "second", "n": 2}
    server.close()
    wait_until(lambda: "_MessageHandler" not in callbacks.kinds(), what="the finalizer at close")


def test_handler_calls_back_into_the_library(h, make_hydra):
    """A handler making a nested request to a third service (another library
    call that blocks on another callback)."""
    leaf = make_hydra("py-leaf")
    leaf.on_message(lambda m: {"leaf": m["body"]})
    leaf.register_service()
    middle = make_hydra("py-middle")
    middle.on_message(lambda m: {"middle": middle.request("py-leaf:/", m["body"], timeout=WAIT)["body"],
                                 "presence": middle.has_service_presence("py-leaf")})
    middle.register_service()
    reply = h.request("py-middle:/", {"x": 1}, timeout=WAIT)
    assert reply["body"] == {"middle": {"leaf": {"x": 1}}, "presence": True}


def test_handler_closes_its_own_handle(h, redis_url):
    # The handler only records what happened: an assertion (pytest's failure
    # included) raised inside it would be caught by the trampoline and turned
    # into an error reply, so it could never fail the test.
    closed = threading.Event()
    outcome = queue.Queue()
    stopper = hydra_rs.Hydra(config("py-stopper", redis_url))

    @stopper.on_message
    def handler(message):
        stopper.close()
        try:
            outcome.put(("returned", stopper.is_registered))
        except BaseException as error:  # noqa: B036 (recorded, checked below)
            outcome.put(("raised", error))
        closed.set()

    stopper.register_service()
    h.send_message("py-stopper:/", {"stop": True})
    assert closed.wait(WAIT)
    assert stopper.closed
    kind, value = outcome.get_nowait()
    assert kind == "raised" and isinstance(value, hydra_rs.InvalidHandleError), (kind, value)
    wait_until(lambda: "_MessageHandler" not in callbacks.kinds(), what="the finalizer")
    with pytest.raises(hydra_rs.InvalidHandleError):
        stopper.shutdown()


def test_slow_handler_and_close(h, redis_url, caplog):
    """Closing waits for a running handler; its late reply is refused (and
    logged), its finalizer runs once."""
    started, finished = threading.Event(), threading.Event()
    slow = hydra_rs.Hydra(config("py-slow", redis_url))

    @slow.on_message
    def handler(message):
        started.set()
        time.sleep(1.0)
        finished.set()
        return {"late": True}

    slow.register_service()
    with pytest.raises(hydra_rs.TimeoutError, match="no reply"):
        h.request("py-slow:/", {}, timeout=0.3)
    assert started.wait(WAIT)
    slow.close()
    assert finished.is_set()
    assert "_MessageHandler" not in callbacks.kinds()
    assert any("could not send the reply" in r.getMessage() for r in caplog.records)


def test_receive_message_pull(h, make_hydra):
    puller = make_hydra("py-puller")
    puller.register_service()
    assert puller.receive_message(0.05) is None
    h.send_message("py-puller:/", {"pulled": True})
    message = puller.receive_message(WAIT)
    assert message["body"] == {"pulled": True}


def test_log_forwarding_with_a_handler_that_calls_the_library(redis_url):
    records = queue.Queue()
    holder = {}

    class CallsBack(logging.Handler):
        def emit(self, record):
            h = holder.get("h")
            registered = h.is_registered if h is not None and not h.closed else None
            records.put((record.name, record.getMessage(), registered))

    logger = logging.getLogger("hydra_rs.lib")
    handler = CallsBack()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        hydra_rs.forward_logs(logging.INFO)
        hydra_rs.forward_logs(logging.INFO)  # replacing: the first forwarder is released
        assert callbacks.kinds().count("_LogForwarder") == 1
        holder["h"] = h = hydra_rs.Hydra(config("py-logged", redis_url))
        h.register_service()
        deadline = time.monotonic() + WAIT
        while True:
            name, message, registered = records.get(timeout=max(0.01, deadline - time.monotonic()))
            if "py-logged" in message and registered:
                assert name.startswith("hydra_rs.lib.hydra")
                break
        h.close()
    finally:
        hydra_rs.forward_logs(None)
        logger.removeHandler(handler)
    assert "_LogForwarder" not in callbacks.kinds()


def test_nothing_left_behind_after_a_busy_service(make_hydra):
    server = make_hydra("py-busy")
    server.on_message(lambda m: m["body"])
    server.add_route("GET", "/v1/busy", lambda r: 1)
    server.register_service()
    server.serve_http()
    worker = server.queue_worker("py-busy", lambda item: None)
    assert sorted(callbacks.kinds()) == ["_HttpRoutes", "_MessageHandler", "_QueueHandler"]
    worker.close()
    server.close()
    wait_until(lambda: len(callbacks) == 0, what="every finalizer")


def test_interpreter_exit_with_live_services_and_running_handlers(redis_url, tmp_path):
    """A program that never closes anything, with a handler running and log
    forwarding on when it exits: the atexit hook releases every handle while
    Python still runs, so the exit is clean (no crash, no hang)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "leaky.py"
    script.write_text(
        "import logging, threading, hydra_rs\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "hydra_rs.forward_logs(logging.INFO)\n"
        f"url = {redis_url!r}\n"
        "server = hydra_rs.Hydra({'hydra': {'serviceName': 'py-exit', 'serviceIP': '127.0.0.1', 'redis': {'url': url}}})\n"
        "started = threading.Event()\n"
        "def slow(message):\n"
        "    started.set()\n"
        "    import time; time.sleep(0.5)\n"
        "    return {'late': True}\n"
        "server.on_message(slow)\n"
        "server.register_service()\n"
        "client = hydra_rs.Hydra({'hydra': {'serviceName': 'py-exit-client', 'redis': {'url': url}}})\n"
        "client.send_message('py-exit:/', {})\n"
        "if not started.wait(10):\n"
        "    raise SystemExit('the handler never started')\n"
        "print('exiting', flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(hydra_rs.__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "exiting\n"
    with hydra_rs.Hydra(config("py-exit-probe", redis_url)) as probe:
        assert not probe.has_service_presence("py-exit"), "the atexit hook shut the service down"


def test_returning_handlers_do_not_answer_replies(make_hydra):
    """Two echo handlers (return the body) exchanging a plain message: the
    reply is not answered again, so there is no endless ping-pong."""
    a = make_hydra("py-echo-a")
    a.on_message(lambda m: m["body"])
    a.register_service()
    b = make_hydra("py-echo-b")
    b.on_message(lambda m: m["body"])
    b.register_service()
    first = a.create_umf_message("py-echo-b:/", {"once": True})
    first["from"] = f"{a.instance_id}@py-echo-a:/"
    a.send_message(first)
    # Counted once the trampoline returned: an answer to the reply would be out by now.
    wait_until(lambda: a.message_stats()["handled"] == 1, what="the reply to reach a")
    assert_nothing_more_reached(b, received=1, make_hydra=make_hydra)
    assert a.message_stats()["received"] == 1


def assert_nothing_more_reached(service, received, make_hydra):
    """Deterministic "nothing more arrived" (no sleep): a probe's request to
    ``service`` is published after anything sent so far, and Redis pushes
    messages to a subscriber connection in the order it ran the PUBLISHes, so
    once ``service`` has answered the probe it has read (and counted)
    everything sent before. Expects ``received`` earlier messages plus the
    probe's."""
    probe = make_hydra("py-probe")
    probe.register_service()
    probe.request(f"{service.service_name}:/", {"probe": True}, timeout=WAIT)
    assert service.message_stats()["received"] == received + 1, service.message_stats()
