"""Queues from Python: put / take / mark round trip, dead letters and redrive,
queue workers (a raising handler fails the delivery, never completes it)."""

import queue
import time

import pytest

import hydra_rs
from conftest import WAIT, wait_until


def test_put_take_mark_round_trip(make_hydra):
    h = make_hydra("py-q")
    assert h.get_queued_message("py-q") is None  # empty, no wait
    started = time.monotonic()
    assert h.get_queued_message("py-q", timeout=0.2) is None
    assert time.monotonic() - started >= 0.15

    h.queue_message("py-q:/", {"job": 1, "text": "ü"})
    h.queue_message({"to": "py-q:/", "from": "elsewhere:/", "body": {"job": 2}})
    stats = h.queue_stats("py-q")
    assert stats["waiting"] == 2 and stats["oldest_waiting_ms"] is not None

    with h.get_queued_message("py-q", timeout=1.0) as first:
        assert first.body == {"job": 1, "text": "ü"}
        assert first.message["from"] == "py-q:/"
        assert (first.queue, first.delivery_count) == ("py-q", 1)
        assert h.queue_stats("py-q")["in_progress"] == 1
        assert first.mark() is True
        assert first.mark() is False  # no longer in progress
    with pytest.raises(hydra_rs.InvalidHandleError):
        first.mark()

    second = h.get_queued_message("py-q")
    assert second.message["from"] == "elsewhere:/"
    assert h.mark_queue_message(second, completed=False, reason="could not") is True
    second.close()
    second.close()  # double close is a no-op
    stats = h.queue_stats("py-q")
    assert (stats["waiting"], stats["in_progress"], stats["incomplete"]) == (0, 0, 1)

    assert h.redrive_dead_letters("py-q") == 1
    again = h.get_queued_message("py-q")
    assert again.body["job"] == 2 and again.body["reason"] == "could not"
    again.mark()
    again.close()


def test_queue_worker_completes(make_hydra):
    h = make_hydra("py-qw")
    done = queue.Queue()
    with h.queue_worker("py-qw", lambda item: done.put(item["message"]["body"]), concurrency=2) as worker:
        for i in range(10):
            h.queue_message("py-qw:/", {"i": i})
        got = sorted(done.get(timeout=WAIT)["i"] for _ in range(10))
        assert got == list(range(10))
        wait_until(lambda: worker.stats()["completed"] == 10, what="10 completions")
        worker.stop()
        worker.stop()  # idempotent
        assert worker.stats()["failed"] == 0
    assert worker.closed
    with pytest.raises(hydra_rs.InvalidHandleError):
        worker.stats()
    worker.close()  # double close
    stats = h.queue_stats("py-qw")
    assert (stats["waiting"], stats["in_progress"], stats["incomplete"]) == (0, 0, 0)


def test_raising_queue_handler_fails_the_delivery(make_hydra, caplog):
    h = make_hydra("py-qfail")
    deliveries = queue.Queue()

    def handler(item):
        deliveries.put(item["deliveryCount"])
        raise ValueError("cannot do this job")

    with h.queue_worker("py-qfail", handler, max_deliveries=2, visibility_timeout=5.0) as worker:
        h.queue_message("py-qfail:/", {"job": "x"})
        assert [deliveries.get(timeout=WAIT), deliveries.get(timeout=WAIT)] == [1, 2]
        wait_until(lambda: worker.stats()["dead_lettered"] == 1, what="a dead letter")
        stats = worker.stats()
        assert stats["completed"] == 0 and stats["failed"] == 2 and stats["retried"] == 1
    assert h.queue_stats("py-qfail")["incomplete"] == 1
    assert any("queue worker handler raised" in r.getMessage() for r in caplog.records)
    assert h.redrive_dead_letters("py-qfail") == 1
    item = h.get_queued_message("py-qfail")
    # The reason carries the exception's type and text.
    assert item.body["reason"] == "queue callback returned HYDRA_CALLBACK_FAILED: ValueError: cannot do this job"
    item.close()


def test_queue_handler_raising_a_library_error_reports_it(make_hydra):
    h = make_hydra("py-qlib")

    def handler(item):
        h.find_service("no-such-service")  # raises NotFoundError

    with h.queue_worker("py-qlib", handler, max_deliveries=1) as worker:
        h.queue_message("py-qlib:/", {})
        wait_until(lambda: worker.stats()["dead_lettered"] == 1, what="a dead letter")
    h.redrive_dead_letters("py-qlib")
    item = h.get_queued_message("py-qlib")
    reason = item.body["reason"]
    assert reason.startswith("queue callback returned HYDRA_CALLBACK_FAILED: NotFoundError: "), reason
    assert "no-such-service" in reason and "(HYDRA_NOT_FOUND)" in reason, reason
    item.close()


def test_queue_handler_calls_back_into_the_library(make_hydra):
    h = make_hydra("py-qchain")
    finished = queue.Queue()

    def stage_one(item):
        h.queue_message("py-qchain2:/", {"from_stage_one": item["message"]["body"]})

    with h.queue_worker("py-qchain", stage_one), h.queue_worker("py-qchain2", finished.put):
        h.queue_message("py-qchain:/", {"n": 1})
        assert finished.get(timeout=WAIT)["message"]["body"] == {"from_stage_one": {"n": 1}}


def test_queue_argument_errors(make_hydra):
    h = make_hydra("py-qargs")
    with pytest.raises(hydra_rs.BadRequestError):
        h.queue_message({"body": {}})  # no `to`
    with pytest.raises(hydra_rs.BadRequestError):
        h.queue_worker("py-qargs", lambda item: None, max_deliveries=-1)
    with pytest.raises(ValueError):
        h.queue_worker("py-qargs", lambda item: None, concurrency=-1)
    with pytest.raises(TypeError):
        h.queue_worker("py-qargs", None)
