"""Fixtures of the hydra_rs test suite: the library under test, a private
redis-server (free loopback port, no persistence), the Rust echo example, a
Node hydra 1.9.3 peer, and Python services that are closed after each test.

``$HYDRA_RS_LIBRARY`` and ``$HYDRA_RS_ECHO`` name the library and the echo
binary to use (``scripts/test`` builds both and sets them); when unset, they
are built here with cargo (debug profile).

``HYDRA_RS_TEST_INSTALLED=1`` tests the installed package instead (``pip
install ./ffi/python``; ``ffi/python/tests_install/run.sh`` does it in a fresh
venv): ``hydra_rs`` must come from outside this repository (run pytest from
another directory) and load the library packaged with it, so
``$HYDRA_RS_LIBRARY`` must be unset.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[3]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

# Hermetic: the library reads these at hydra_new, as Node does.
for _var in ("HYDRA_REDIS_URL", "HYDRA_SERVICE"):
    os.environ.pop(_var, None)


def _cargo_target_dir() -> Path:
    output = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return Path(json.loads(output)["target_directory"])


def _cargo_build(*args: str) -> None:
    subprocess.run(["cargo", "build", "--quiet", *args], cwd=ROOT, check=True)


#: True when the suite tests the pip-installed package (see the module docs).
INSTALLED = os.environ.get("HYDRA_RS_TEST_INSTALLED") == "1"

if INSTALLED:
    if os.environ.get("HYDRA_RS_LIBRARY"):
        raise RuntimeError("HYDRA_RS_TEST_INSTALLED=1 tests the packaged library: unset HYDRA_RS_LIBRARY")
elif not os.environ.get("HYDRA_RS_LIBRARY"):
    _cargo_build("-p", "hydra-ffi")
    os.environ["HYDRA_RS_LIBRARY"] = str(_cargo_target_dir() / "debug" / "libhydra_ffi.so")

import hydra_rs  # noqa: E402  (after the library is known)

if INSTALLED and Path(hydra_rs.__file__).resolve().is_relative_to(ROOT):
    raise RuntimeError(
        f"HYDRA_RS_TEST_INSTALLED=1 but hydra_rs comes from the source tree ({hydra_rs.__file__}): "
        "run pytest from a directory outside the repository, without ffi/python on sys.path"
    )
from node_peer import wait_or_kill  # noqa: E402

WAIT = 20.0


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Polls ``predicate`` (for states that have no event to wait on, such as
    counters in Redis) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_command(port: int, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        return s.recv(65536)


class RedisServer:
    """A redis-server on a free loopback port, persistence off, killed at the end."""

    def __init__(self) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (scripts/test installs it)")
        self.dir = tempfile.mkdtemp(prefix="hydra-py-redis-")
        for _ in range(5):
            self.port = _free_port()
            self.log = open(os.path.join(self.dir, "redis.log"), "w+b")
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir],
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if _redis_command(self.port, "PING").startswith(b"+PONG"):
                        return
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def url(self, db: int = 15) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self, *args: str) -> bytes:
        return _redis_command(self.port, *args)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            wait_or_kill(self.process, 5)
        self.log.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """db 15 of the session's redis-server, emptied for this test."""
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    return redis_server.url(15)


# ---------------------------------------------------------------------------
# Python services
# ---------------------------------------------------------------------------


def config(name: str, redis_url: str, **extra: Any) -> Dict[str, Any]:
    return {"hydra": {"serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
                      "redis": {"url": redis_url}, **extra}}


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After every test (and after its services are closed), the library has
    released every callback it was given: each finalizer ran."""
    yield
    from hydra_rs.hydra import callbacks

    wait_until(lambda: len(callbacks) == 0, timeout=10, what=f"finalizers of {callbacks.kinds()}")


@pytest.fixture
def make_hydra(redis_url: str) -> Iterator[Callable[..., hydra_rs.Hydra]]:
    """``make_hydra("name", **hydra_settings)``: a Hydra on this test's Redis,
    closed at the end of the test."""
    made: List[hydra_rs.Hydra] = []

    def make(name: str, **extra: Any) -> hydra_rs.Hydra:
        h = hydra_rs.Hydra(config(name, redis_url, **extra))
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ---------------------------------------------------------------------------
# Peers: the Rust echo example and Node hydra 1.9.3
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _echo_binary() -> str:
    explicit = os.environ.get("HYDRA_RS_ECHO")
    if explicit:
        return explicit
    _cargo_build("-p", "hydra-redis", "--example", "echo")
    return str(_cargo_target_dir() / "debug" / "examples" / "echo")


class EchoService:
    """``examples/echo.rs`` running: replies ``{"echo": body}`` to every
    message, serves ``GET|POST /v1/<name>/echo``, works its own queue."""

    def __init__(self, binary: str, name: str, redis_url: str):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix="hydra-py-echo-", suffix=".log", delete=False)
        env = dict(os.environ, HYDRA_REDIS_URL=redis_url, RUST_LOG="info")
        self.process = subprocess.Popen(
            [binary, "--name", name], env=env, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready <instanceID> <name> <port>"
        words = line.split()
        if len(words) != 4 or words[0] != "ready":
            self.stop()
            raise RuntimeError(f"the echo example did not start: {line!r}\n{self.log_text()}")
        self.instance_id, self.port = words[1], int(words[3])

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> str:
        """SIGTERM, then what it printed when stopping."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        self.log.close()
        return out or ""


@pytest.fixture
def rust_echo(redis_url: str) -> Iterator[EchoService]:
    echo = EchoService(_echo_binary(), "rust-echo", redis_url)
    yield echo
    echo.stop()
    os.unlink(echo.log.name)


@pytest.fixture
def node_peer(redis_url: str):
    """A Node hydra 1.9.3 process (not yet initialised)."""
    from node_peer import NodePeer

    peer = NodePeer()
    yield peer
    peer.close()
