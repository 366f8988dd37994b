"""HTTP routes served from Python: what a route gets, the three ways to
answer, and routes that fail (raise, return junk) -> 500, never a 200;
binary bodies both ways, byte for byte."""

import base64
import json
import urllib.request

import pytest

import hydra_rs
from hydra_rs import HttpResponse


@pytest.fixture
def served(make_hydra):
    server = make_hydra("py-http")
    seen = []

    @server.route("GET", "/v1/http/items/:id")
    def item(request):
        seen.append(request)
        return {"id": request.params["id"]}

    @server.route("PUT", "/v1/http/items/:id")
    def put(request):
        return 202, {"put": request.json(), "id": request.params["id"]}

    @server.route("GET", "/v1/http/raw")
    def raw(request):
        return HttpResponse.raw(b"\x00\x01binary", 203, "application/x-thing", headers={"x-raw": "yes"})

    @server.route("GET", "/v1/http/headers")
    def with_headers(request):
        return HttpResponse({"ok": True}, 200, headers={"x-served-by": "python", "cache-control": "no-store"})

    @server.route("GET", "/v1/http/raise")
    def raising(request):
        raise LookupError("nothing here")

    @server.route("GET", "/v1/http/junk")
    def junk(request):
        return {"not json": object()}

    @server.route("GET", "/v1/http/bad-status")
    def bad_status(request):
        return 1000, {}

    @server.route("GET", "/v1/http/status-600")
    def status_600(request):
        return 600, {}

    @server.route("GET", "/v1/http/calls-back")
    def calls_back(request):
        # A route may call the library, even on its own handle.
        return {"me": server.instance_id, "registered": server.is_registered,
                "presence": len(server.get_service_presence("py-http"))}

    server.register_service()
    server.serve_http()
    client = make_hydra("py-http-client")
    return server, client, seen


def test_route_gets_the_request(served):
    server, client, seen = served
    response = client.make_api_request("py-http:[get]/v1/http/items/7?a=1&b=two", headers={"X-Custom": "v"})
    assert response["statusCode"] == 200
    assert response["instanceID"] == server.instance_id
    body = response["body"]
    assert (body["statusCode"], body["statusMessage"], body["result"]) == (200, "OK", {"id": "7"})
    request = seen[0]
    assert (request.route, request.method, request.path) == ("[get]/v1/http/items/:id", "GET", "/v1/http/items/7")
    assert request.query == "a=1&b=two" and request.query_params == {"a": "1", "b": "two"}
    assert request.headers["x-custom"] == "v"
    assert request.params == {"id": "7"}


def test_status_tuple_raw_bytes_and_headers(served):
    _, client, _ = served
    response = client.make_api_request("py-http:[put]/v1/http/items/9", {"n": 1})
    assert response["statusCode"] == 202
    assert response["body"]["result"] == {"put": {"n": 1}, "id": "9"}
    response = client.make_api_request("py-http:[get]/v1/http/raw")
    assert response["statusCode"] == 203
    assert response["headers"]["content-type"] == "application/x-thing"
    assert response["headers"]["x-raw"] == "yes"
    assert response["body"] == "\x00\x01binary"
    assert "bodyBase64" not in response  # UTF-8, if not printable: no copy
    response = client.make_api_request("py-http:[get]/v1/http/headers")
    assert response["headers"]["x-served-by"] == "python"
    assert response["headers"]["cache-control"] == "no-store"
    assert response["body"]["result"] == {"ok": True}


@pytest.mark.parametrize(
    "path, why",
    [
        ("raise", "LookupError: nothing here"),
        ("junk", "TypeError: Object of type object is not JSON serializable"),
        ("bad-status", "ValueError: HTTP status must be an int from 100 to 599, got 1000"),
        ("status-600", "ValueError: HTTP status must be an int from 100 to 599, got 600"),
    ],
)
def test_failing_routes_answer_500(served, path, why, caplog):
    server, client, _ = served
    response = client.make_api_request(f"py-http:[get]/v1/http/{path}")
    assert response["statusCode"] == 500
    assert response["body"]["statusCode"] == 500
    # The exception's type and text reach the client as the reason.
    assert response["body"]["result"]["reason"] == f"the route handler failed (HYDRA_CALLBACK_FAILED): {why}"
    assert any(r.name == "hydra_rs" and "raised" in r.getMessage() for r in caplog.records)
    # The server lives on.
    assert client.make_api_request("py-http:[get]/v1/http/items/1")["statusCode"] == 200


def test_routes_may_call_the_library(served):
    server, client, _ = served
    response = client.make_api_request("py-http:[get]/v1/http/calls-back")
    assert response["body"]["result"] == {"me": server.instance_id, "registered": True, "presence": 1}


def test_unknown_paths_and_methods(served):
    _, client, _ = served
    assert client.make_api_request("py-http:[get]/v1/http/nope")["statusCode"] == 404
    assert client.make_api_request("py-http:[delete]/v1/http/items/1")["statusCode"] == 405


def test_routes_in_redis_and_match_route(served):
    server, client, _ = served
    routes = client.get_all_service_routes()["py-http"]
    assert "[get]/v1/http/items/:id" in routes and "[put]/v1/http/items/:id" in routes
    assert server.match_route("[get]/v1/http/items/77")
    assert not server.match_route("[post]/v1/http/items/77")
    client.register_service()
    client.register_routes(["[get]/v1/other/:x"])
    assert "[get]/v1/other/:x" in client.get_all_service_routes()["py-http-client"]


def test_route_registration_rules(make_hydra):
    h = make_hydra("py-http-rules")
    h.add_route("GET", "/v1/x", lambda r: 1)
    with pytest.raises(TypeError):
        h.add_route("GET", "/v1/y", "not callable")
    h.register_service()
    h.serve_http(workers=2, max_body_bytes=1024)
    with pytest.raises(RuntimeError, match="before serve_http"):
        h.add_route("GET", "/v1/z", lambda r: 1)
    with pytest.raises(hydra_rs.BadRequestError, match="unknown"):
        make_hydra("py-http-rules2").serve_http(no_such_setting=1)


def test_post_body_limits_answer_413_not_crash(make_hydra):
    server = make_hydra("py-http-limit")
    server.add_route("POST", "/v1/limit", lambda r: {"len": len(r.body)})
    server.register_service()
    server.serve_http(max_body_bytes=100)
    client = make_hydra("py-http-limit-client")
    assert client.make_api_request("py-http-limit:[post]/v1/limit", {"x": "a" * 10})["body"]["result"] == {"len": 18}
    assert client.make_api_request("py-http-limit:[post]/v1/limit", {"x": "a" * 500})["statusCode"] == 413


# Every byte value, then bytes that are never UTF-8 (0xff, 0xfe) and a NUL.
BINARY = bytes(range(256)) + b"\xff\xfe\x00"


@pytest.fixture
def binary_service(make_hydra, monkeypatch):
    """A service with an upload route and a route answering raw bytes; the
    requests its routes got, with the library's request JSON as decoded."""
    server = make_hydra("py-http-binary")
    seen = []

    class Recorded(hydra_rs.HttpRequest):
        def __init__(self, data):
            super().__init__(data)
            self.data = data

    # The trampoline builds requests through this module global.
    monkeypatch.setattr(hydra_rs.hydra, "HttpRequest", Recorded)

    @server.route("POST", "/v1/http/upload")
    def upload(request):
        seen.append(request)
        return {"received": len(request.body_bytes)}

    @server.route("GET", "/v1/http/binary")
    def binary(request):
        return HttpResponse.raw(BINARY, 200, "application/octet-stream")

    server.register_service()
    port = server.serve_http()
    return server, port, seen


def _post(port, path, data):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST",
        headers={"content-type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


def test_a_binary_upload_reaches_the_route_byte_for_byte(binary_service):
    _, port, seen = binary_service
    status, answer = _post(port, "/v1/http/upload", BINARY)
    assert (status, answer["result"]) == (200, {"received": len(BINARY)})
    request = seen[0]
    assert request.body_bytes == BINARY
    assert base64.b64decode(request.data["bodyBase64"]) == BINARY
    # The lossy text stays, for compatibility.
    assert "\ufffd" in request.body and request.body.startswith("\x00\x01\x02")


def test_a_text_upload_has_no_base64(binary_service):
    _, port, seen = binary_service
    text = "caf\u00e9 \u2713 with a NUL \x00 and \U0001f600"
    status, answer = _post(port, "/v1/http/upload", text.encode())
    assert (status, answer["result"]) == (200, {"received": len(text.encode())})
    request = seen[0]
    assert request.body == text
    assert request.body_bytes == text.encode()
    assert "bodyBase64" not in request.data


def test_make_api_request_returns_binary_responses_exactly(binary_service, make_hydra):
    client = make_hydra("py-http-binary-client")
    response = client.make_api_request("py-http-binary:[get]/v1/http/binary")
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/octet-stream"
    assert base64.b64decode(response["bodyBase64"]) == BINARY
    assert isinstance(response["body"], str) and "\ufffd" in response["body"]
    # JSON and UTF-8 text responses are unchanged: no copy.
    response = client.make_api_request("py-http-binary:[post]/v1/http/upload", {"n": 1})
    assert response["body"]["result"] == {"received": len('{"n":1}')}
    assert "bodyBase64" not in response


def test_a_response_over_max_response_bytes_is_an_error_not_a_cut_body(served):
    _, client, _ = served
    # The raw route answers 8 bytes: with an 8-byte limit they arrive whole,
    # over a 7-byte limit the call fails rather than returning 7 bytes.
    assert client.make_api_request("py-http:[get]/v1/http/raw", max_response_bytes=8)["body"] == "\x00\x01binary"
    with pytest.raises(hydra_rs.MalformedError, match="larger than 7 bytes"):
        client.make_api_request("py-http:[get]/v1/http/raw", max_response_bytes=7)
    with pytest.raises(hydra_rs.BadRequestError, match="maxResponseBytes"):
        client.make_api_request("py-http:[get]/v1/http/raw", max_response_bytes=-1)
