"""The rest of a service's API from Python: identity, discovery, health log,
config store, broadcast, counters."""

import queue

import pytest

import hydra_rs
from conftest import WAIT, wait_until


def test_identity_and_registration(make_hydra):
    h = make_hydra("Py-Ident", serviceVersion="1.2.3")
    assert h.service_name == "py-ident"
    assert len(h.instance_id) == 32 and int(h.instance_id, 16) >= 0
    assert not h.is_registered
    info = h.register_service()
    assert info["serviceName"] == "py-ident" and info["serviceIP"] == "127.0.0.1"
    assert h.is_registered
    full = h.get_service_info()
    assert full["instanceID"] == h.instance_id and full["serviceVersion"] == "1.2.3"
    assert "Hydra(handle=" in repr(h)


def test_hydra_from_a_name_uses_the_environment(redis_url, monkeypatch):
    monkeypatch.setenv("HYDRA_REDIS_URL", redis_url)
    with hydra_rs.Hydra("py-by-name") as h:
        h.register_service()
        with hydra_rs.Hydra("py-observer") as observer:
            assert observer.has_service_presence("py-by-name")


def test_discovery(make_hydra):
    a = make_hydra("py-disc")
    a.register_service()
    b = make_hydra("py-disc")
    b.register_service()
    observer = make_hydra("py-observer")
    names = {s["serviceName"] for s in observer.get_services()}
    assert "py-disc" in names
    assert observer.find_service("py-disc")["serviceName"] == "py-disc"
    with pytest.raises(hydra_rs.NotFoundError, match="Can't find nothing-here service"):
        observer.find_service("nothing-here")
    presence = observer.get_service_presence("py-disc")
    assert sorted(p["instanceID"] for p in presence) == sorted([a.instance_id, b.instance_id])
    assert observer.get_service_presence("nothing-here") == []
    assert observer.has_service_presence("py-disc") and not observer.has_service_presence("nothing-here")
    nodes = observer.get_service_nodes()
    assert {a.instance_id, b.instance_id} <= {node["instanceID"] for node in nodes}
    b.shutdown()
    assert [p["instanceID"] for p in observer.get_service_presence("py-disc")] == [a.instance_id]
    assert observer.clear_stale_nodes(older_than=3600) == 0


def test_health_and_health_log(make_hydra):
    h = make_hydra("py-health")
    assert h.get_health() is None  # not registered
    h.register_service()
    health = h.get_health()
    assert health["serviceName"] == "py-health" and health["instanceID"] == h.instance_id
    h.send_to_health_log("error", "python wrote this ✓")
    log = h.get_service_health_log("py-health")
    assert any(entry["msg"] == "python wrote this ✓" and entry["type"] == "error" for entry in log), log
    everything = h.get_service_health_all()
    mine = [item for item in everything if item["service"]["serviceName"] == "py-health"]
    assert len(mine) == 1 and mine[0]["log"] and mine[0]["presence"], everything


def test_config_store(make_hydra):
    h = make_hydra("py-config")
    document = {"hydra": {"serviceName": "billing"}, "n": [1, 2.5, None], "text": "ü"}
    h.put_config("billing:1.0.0", document)
    h.put_config("billing:1.1.0", {"v": 2})
    assert h.get_config("billing:1.0.0") == document
    assert h.list_config("billing") == ["billing:1.0.0", "billing:1.1.0"]
    with pytest.raises(hydra_rs.NotFoundError):
        h.get_config("billing:9.9.9")


def test_broadcast_and_counters(make_hydra):
    got = queue.Queue()
    listeners = []
    for _ in range(3):
        listener = make_hydra("py-bcast")
        listener.on_message(lambda m, who=len(listeners): got.put((who, m["body"])))
        listener.register_service()
        listeners.append(listener)
    sender = make_hydra("py-sender")
    sender.send_broadcast_message("py-bcast:/", {"all": True})
    assert sorted(got.get(timeout=WAIT)[0] for _ in range(3)) == [0, 1, 2]
    for listener in listeners:
        wait_until(lambda: listener.message_stats()["handled"] == 1, what="handled counter")
    assert sender.message_stats()["sent"] >= 1
    assert set(sender.http_stats()) >= {"connections", "requests", "rejected"}


def test_send_reply_message_and_reply(make_hydra):
    server = make_hydra("py-replies")
    server.on_message(lambda m: server.send_reply_message(m, {"body": {"long": True}, "type": "answer"})
                      if m["body"].get("long") else server.reply(m, {"short": True}))
    server.register_service()
    client = make_hydra("py-asker")
    client.register_service()
    assert client.request("py-replies:/", {"long": 1}, timeout=WAIT)["body"] == {"long": True}
    assert client.request("py-replies:/", {"short": 1}, timeout=WAIT)["body"] == {"short": True}
    with pytest.raises(hydra_rs.ServiceUnavailableError, match="Unavailable nobody instances"):
        client.request("nobody:/", {}, timeout=1.0)
    silent = make_hydra("py-silent")
    silent.on_message(lambda m: None)
    silent.register_service()
    # Only the request may raise: a set-up failing with a timeout must not pass.
    with pytest.raises(hydra_rs.TimeoutError, match="no reply"):
        client.request("py-silent:/", {}, timeout=0.2)
    wait_until(lambda: silent.message_stats()["handled"] == 1, what="the silent handler to have run")


def test_version():
    assert hydra_rs.version() == hydra_rs.native.lib.hydra_version().decode()
