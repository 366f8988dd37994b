"""A real Node ``hydra@1.9.3`` process driven over JSON lines
(``interop/peer.js``; its header comment has the protocol), the Python twin of
``testkit/src/node_peer.rs``.

``peer.call("registerService")`` calls ``hydra.registerService()`` in Node and
returns its result (or raises :class:`NodeCallError` with Node's message);
Hydra's ``message`` / ``log`` / ``metric`` events queue up for
:meth:`NodePeer.next_event` / :meth:`NodePeer.wait_event`. Node's ``hydra``
is a singleton, so one peer is one Node hydra instance.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

ROOT = Path(__file__).resolve().parents[3]
INTEROP = ROOT / "interop"
READY_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0


def wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    """Waits for `process` to exit; kills it after `timeout` seconds."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class NodeCallError(Exception):
    """Node answered a call with an error (its message), or did not answer."""


class NodePeer:
    def __init__(self, env: Optional[Dict[str, str]] = None):
        if not (INTEROP / "node_modules" / "hydra" / "package.json").is_file():
            raise RuntimeError("Node hydra is not installed: run `npm ci --prefix interop` (scripts/test does it)")
        child_env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_REDIS_URL", "HYDRA_SERVICE")}
        child_env.update(env or {})
        self.log = tempfile.NamedTemporaryFile(prefix="hydra-py-node-peer-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            ["node", str(INTEROP / "peer.js")],
            cwd=INTEROP,
            env=child_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self._ids = itertools.count(1)
        self._pending: Dict[int, "queue.Queue[Tuple[str, Any]]"] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.events: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="node-peer-reader", daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT):
            self.close()
            raise RuntimeError(f"the Node peer did not start:\n{self.log_tail()}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            if line.get("ready"):
                self._ready.set()
            elif "event" in line:
                self.events.put((line["event"], line.get("data")))
            elif "id" in line:
                with self._lock:
                    waiter = self._pending.pop(line["id"], None)
                if waiter is not None:
                    waiter.put(("ok", line["ok"]) if "ok" in line else ("err", line.get("err")))
        with self._lock:
            pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.put(("exited", None))

    def call(self, method: str, *args: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """``hydra[method](*args)`` in Node (awaited); its result."""
        ident = next(self._ids)
        waiter: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
        with self._lock:
            self._pending[ident] = waiter
        line = json.dumps({"id": ident, "method": method, "args": list(args)}) + "\n"
        try:
            with self._write_lock:
                assert self.process.stdin is not None
                self.process.stdin.write(line.encode())
                self.process.stdin.flush()
        except OSError as error:
            raise NodeCallError(f"{method}: the Node peer is gone ({error})\n{self.log_tail()}")
        try:
            kind, value = waiter.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                self._pending.pop(ident, None)
            raise NodeCallError(f"{method}: no answer from Node within {timeout} s\n{self.log_tail()}")
        if kind == "ok":
            return value
        if kind == "err":
            raise NodeCallError(f"{method}: {value}")
        raise NodeCallError(f"{method}: the Node peer exited\n{self.log_tail()}")

    def next_event(self, timeout: float) -> Optional[Tuple[str, Any]]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_event(self, name: str, timeout: float, where=lambda data: True) -> Any:
        """The data of the next ``name`` event for which ``where(data)``;
        other events are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name!r} event from Node within {timeout} s\n{self.log_tail()}")
            event = self.next_event(left)
            if event is not None and event[0] == name and where(event[1]):
                return event[1]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "--- node peer stderr ---\n" + "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Closes stdin (peer.js then shuts hydra down and exits); kills it
        after 5 s."""
        try:
            if self.process.stdin:
                self.process.stdin.close()
        except OSError:
            pass
        wait_or_kill(self.process, 5)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def __enter__(self) -> "NodePeer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
