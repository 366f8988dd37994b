"""Python <-> the Rust echo example (examples/echo.rs, its own process):
request-reply both ways, HTTP, and the echo's queue."""

import queue
import threading

import pytest

import hydra_rs
from conftest import WAIT, wait_until


def test_request_reply_with_the_rust_echo(make_hydra, rust_echo):
    h = make_hydra("py-client")
    h.register_service()
    body = {"n": 1, "text": "grüße ✓", "big": 12345678901234567890, "f": 1.5, "list": [None, True]}
    reply = h.request("rust-echo:/", body, timeout=WAIT)
    assert reply["body"] == {"echo": body}
    assert reply["from"] == "rust-echo:/", reply  # the original's `to` (wire spec 4.5)
    assert reply["rmid"]
    # To the instance, with a message given as a dict.
    message = h.create_umf_message(f"{rust_echo.instance_id}@rust-echo:/", {"to": "instance"})
    reply = h.request(message, timeout=WAIT)
    assert reply["rmid"] == message["mid"]
    assert reply["from"] == f"{rust_echo.instance_id}@rust-echo:/", reply
    assert reply["body"] == {"echo": {"to": "instance"}}
    stats = h.message_stats()
    assert stats["replies_matched"] >= 2 and stats["sent"] >= 2


def test_many_python_threads_request_at_once(make_hydra, rust_echo):
    h = make_hydra("py-client")
    h.register_service()
    failures: "queue.Queue[str]" = queue.Queue()

    def caller(t):
        for i in range(25):
            body = {"t": t, "i": i}
            try:
                reply = h.request("rust-echo:/", body, timeout=WAIT)
                if reply["body"] != {"echo": body}:
                    failures.put(f"wrong reply {reply['body']} to {body}")
            except Exception as error:  # reported below
                failures.put(repr(error))

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert failures.empty(), list(failures.queue)
    assert h.message_stats()["replies_matched"] == 200


def test_rust_replies_reach_a_python_handler(make_hydra, rust_echo):
    """A plain send (not request) from Python: the Rust echo's reply comes to
    the Python service's message handler."""
    h = make_hydra("py-listener")
    got: "queue.Queue[dict]" = queue.Queue()
    h.on_message(got.put)
    h.register_service()
    sent = h.create_umf_message("rust-echo:/", {"hello": "rust"})
    sent["from"] = f"{h.instance_id}@py-listener:/"
    h.send_message(sent)
    reply = got.get(timeout=WAIT)
    assert reply["rmid"] == sent["mid"]
    assert reply["body"] == {"echo": {"hello": "rust"}}
    assert reply["to"].startswith(h.instance_id)


def test_http_routes_of_the_rust_echo(make_hydra, rust_echo):
    h = make_hydra("py-client")
    response = h.make_api_request(
        "rust-echo:[post]/v1/rust-echo/echo", {"a": [1, 2]}, headers={"x-from": "python"}, timeout=WAIT
    )
    assert response["statusCode"] == 200
    assert response["instanceID"] == rust_echo.instance_id
    result = response["body"]["result"]
    assert result["a"] == [1, 2]
    assert result["headers"]["x-from"] == "python"
    response = h.make_api_request("rust-echo:[get]/v1/rust-echo/echo?x=1")
    assert response["statusCode"] == 200
    assert h.make_api_request("rust-echo:[get]/v1/rust-echo/nothing")["statusCode"] == 404
    with pytest.raises(hydra_rs.ServiceUnavailableError, match="nobody"):
        h.make_api_request("nobody:[get]/v1/x")


def test_the_rust_echo_works_what_python_queues(make_hydra, rust_echo):
    h = make_hydra("py-producer")
    for i in range(3):
        h.queue_message({"to": "rust-echo:/", "body": {"job": i}})
    wait_until(
        lambda: h.queue_stats("rust-echo")["waiting"] == 0 and h.queue_stats("rust-echo")["in_progress"] == 0,
        what="the echo to work the queue",
    )
    out = rust_echo.stop()
    assert "and 3 queued messages" in out, out
    assert '{"echo":{"job":2}}' in rust_echo.log_text()
