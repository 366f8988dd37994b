"""Python <-> real Node hydra 1.9.3 (interop/peer.js): messages and replies both
ways, discovery, an HTTP route served from Python called by Node's
makeAPIRequest, and queues both ways."""

import queue
import threading

import hydra_rs
from conftest import WAIT, wait_until


def node_init(peer, name, redis_url, register=True):
    peer.call("init", {"hydra": {"serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
                                 "redis": {"url": redis_url}}})
    if register:
        peer.call("registerService")
    return peer.call("getInstanceID")


def wait_subscribed(h, to):
    """Node's registerService resolves before its SUBSCRIBEs are done: probe
    until a message to its instance channel has a receiver."""
    def probe():
        try:
            h.send_message(to, {"probe": True})
            return True
        except hydra_rs.ServiceUnavailableError:
            return False

    wait_until(probe, what=f"the Node peer to subscribe to {to}")


def node_answers(peer, stop):
    """Runs in a thread: the Node service replies {"node_answer": ask} to
    every message with an `ask`."""
    while not stop.is_set():
        event = peer.next_event(0.1)
        if event is None or event[0] != "message":
            continue
        data = event[1]
        if "ask" in (data.get("bdy") or {}):
            peer.call("sendReplyMessage", data, {"body": {"node_answer": data["bdy"]["ask"]}})


def test_messages_both_ways_with_node(make_hydra, node_peer, redis_url):
    h = make_hydra("py-svc")
    seen = queue.Queue()

    @h.on_message
    def handle(message):
        seen.put(message)
        if message["body"].get("fail"):
            raise RuntimeError("asked to fail")
        return {"by": "python", "got": message["body"]}

    info = h.register_service()
    node_id = node_init(node_peer, "node-svc", redis_url)
    wait_subscribed(h, f"{node_id}@node-svc:/")

    # Node discovers the Python service.
    presence = node_peer.call("getServicePresence", "py-svc")
    assert [p["instanceID"] for p in presence] == [h.instance_id]
    assert presence[0]["port"] == info["servicePort"]

    # Node -> Python; the handler's return value is the reply Node gets.
    node_peer.call("sendMessage", {"to": "py-svc:/", "from": f"{node_id}@node-svc:/", "body": {"from_node": "✓"}})
    got = seen.get(timeout=WAIT)
    assert got["body"] == {"from_node": "✓"}
    reply = node_peer.wait_event("message", WAIT, lambda d: d.get("rmid") == got["mid"])
    assert reply["bdy"] == {"by": "python", "got": {"from_node": "✓"}}

    # A handler that raises: Node gets Hydra's error envelope, not silence.
    node_peer.call("sendMessage", {"to": "py-svc:/", "from": f"{node_id}@node-svc:/", "body": {"fail": 1}})
    failed = seen.get(timeout=WAIT)
    reply = node_peer.wait_event("message", WAIT, lambda d: d.get("rmid") == failed["mid"])
    assert reply["bdy"]["statusCode"] == 500
    assert "RuntimeError: asked to fail" in reply["bdy"]["result"]["reason"]
    # Counted once the handler has returned (after its error reply went out).
    wait_until(lambda: h.message_stats()["failed"] == 1, what="the failure to be counted")

    # Python -> Node, request-reply.
    stop = threading.Event()
    answerer = threading.Thread(target=node_answers, args=(node_peer, stop), daemon=True)
    answerer.start()
    try:
        reply = h.request("node-svc:/", {"ask": [1, "two"]}, timeout=WAIT)
        assert reply["body"] == {"node_answer": [1, "two"]}
        assert reply["to"].startswith(h.instance_id)
    finally:
        stop.set()
        answerer.join(WAIT)
    assert not answerer.is_alive(), "the Node answerer thread did not stop"


def test_node_calls_an_http_route_served_from_python(make_hydra, node_peer, redis_url):
    h = make_hydra("py-web")

    @h.route("GET", "/v1/py/items/:id")
    def item(request):
        return {"id": request.params["id"], "q": request.query_params, "ua": "x-node" in request.headers}

    @h.route("POST", "/v1/py/items")
    def create(request):
        return 201, {"created": request.json()}

    @h.route("GET", "/v1/py/broken")
    def broken(request):
        raise ZeroDivisionError("no")

    h.register_service()
    port = h.serve_http()
    node_init(node_peer, "node-web", redis_url)
    # The routes are in Redis, where Node and hydra-router look.
    routes = node_peer.call("getAllServiceRoutes")
    assert set(routes["py-web"]) >= {"[get]/v1/py/items/:id", "[post]/v1/py/items", "[get]/v1/py/broken"}

    got = node_peer.call("makeAPIRequest", {"to": "py-web:[get]/v1/py/items/42?color=red", "from": "node-web:/",
                                            "headers": {"x-node": "1"}, "body": {}})
    assert got["statusCode"] == 200
    assert got["result"] == {"id": "42", "q": {"color": "red"}, "ua": True}
    got = node_peer.call("makeAPIRequest", {"to": "py-web:[post]/v1/py/items", "from": "node-web:/",
                                            "body": {"name": "ünï"}})
    assert got["statusCode"] == 201
    assert got["result"] == {"created": {"name": "ünï"}}
    got = node_peer.call("makeAPIRequest", {"to": "py-web:[get]/v1/py/broken", "from": "node-web:/", "body": {}})
    assert got["statusCode"] == 500
    stats = h.http_stats()
    assert stats["requests"] >= 3
    assert h.get_service_presence("py-web")[0]["port"] == port


def test_queues_both_ways_with_node(make_hydra, node_peer, redis_url):
    h = make_hydra("py-work")
    # Node's markQueueMessage works on its own service's lists: the Node
    # consumer of queue "node-jobs" is named "node-jobs".
    node_init(node_peer, "node-jobs", redis_url, register=False)

    # Python -> Node.
    h.queue_message("node-jobs:/", {"for_node": [1, 2.5]})
    taken = node_peer.call("getQueuedMessage", "node-jobs")
    assert taken["bdy"] == {"for_node": [1, 2.5]}
    assert taken["frm"] == "py-work:/"
    node_peer.call("markQueueMessage", taken, True, "done")
    stats = h.queue_stats("node-jobs")
    assert (stats["waiting"], stats["in_progress"], stats["incomplete"]) == (0, 0, 0)

    # Node -> a Python queue worker.
    worked = queue.Queue()
    worker = h.queue_worker("py-work", worked.put)
    with worker:
        node_peer.call("queueMessage", {"to": "py-work:/", "from": "node-jobs:/", "body": {"from_node": "✓"}})
        item = worked.get(timeout=WAIT)
        assert item["message"]["body"] == {"from_node": "✓"}
        assert item["queue"] == "py-work"
        assert item["deliveryCount"] == 1
        wait_until(lambda: worker.stats()["completed"] == 1, what="the completion")
    stats = h.queue_stats("py-work")
    assert (stats["waiting"], stats["in_progress"], stats["incomplete"]) == (0, 0, 0)
