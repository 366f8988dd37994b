"""Redis Sentinel from Python: the config is the same JSON as in Rust, so a
Hydra given ``redis.sentinels`` (ioredis's names) or a ``redis+sentinel://``
URL finds the master through a real ``redis-sentinel`` and works."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Iterator

import pytest

import hydra_rs
from conftest import RedisServer, _free_port, _redis_command, wait_until
from node_peer import wait_or_kill

MASTER_NAME = "pymaster"


class Sentinel:
    """One ``redis-sentinel`` monitoring ``master_port`` (quorum 1)."""

    def __init__(self, master_port: int):
        if not shutil.which("redis-sentinel"):
            raise RuntimeError("redis-sentinel is not installed (scripts/test installs Debian's redis-sentinel)")
        self.dir = tempfile.mkdtemp(prefix="hydra-py-sentinel-")
        self.port = _free_port()
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
                f"logfile {self.dir}/sentinel.log\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n"
            )
        self.process = subprocess.Popen(["redis-sentinel", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._names_master, timeout=10, what="the sentinel to name the master")

    def _names_master(self) -> bool:
        try:
            reply = _redis_command(self.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        except OSError:
            return False
        return reply.startswith(b"*2")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            wait_or_kill(self.process, 5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sentinel(redis_server: RedisServer) -> Iterator[Sentinel]:
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    s = Sentinel(redis_server.port)
    yield s
    s.stop()


def test_a_hydra_configured_with_sentinels_works(sentinel, redis_server):
    # Node's object form as ioredis spells it (Node hydra PR #214), a dead
    # sentinel listed first: the next one is asked.
    dead = _free_port()
    service_config = {"hydra": {
        "serviceName": "py-sentinel", "serviceIP": "127.0.0.1", "servicePort": 0,
        "connectTimeout": 500,
        "redis": {"sentinels": [{"host": "127.0.0.1", "port": dead}, {"host": "127.0.0.1", "port": sentinel.port}],
                  "name": MASTER_NAME, "db": 15},
    }}
    # The URL form.
    client_config = {"hydra": {
        "serviceName": "py-sentinel-client", "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": f"redis+sentinel://127.0.0.1:{sentinel.port}/{MASTER_NAME}/15"},
    }}
    with hydra_rs.Hydra(service_config) as service, hydra_rs.Hydra(client_config) as client:
        service.on_message(lambda message: {"pong": message["body"]})
        service.register_service()
        client.register_service()
        assert [p["instanceID"] for p in client.get_service_presence("py-sentinel")] == [service.instance_id]
        reply = client.request(client.create_umf_message("py-sentinel:/", {"n": 1}), timeout=10)
        assert reply["body"] == {"pong": {"n": 1}}
    # Everything went to the master the sentinel names, in db 15.
    stored = subprocess.run(["redis-cli", "-p", str(redis_server.port), "-n", "15", "EXISTS",
                             "hydra:service:py-sentinel:service"], capture_output=True, text=True).stdout
    assert stored.strip() == "1"


def test_a_bad_sentinel_config_names_the_field():
    config = {"hydra": {"serviceName": "py-bad", "redis": {"sentinels": [{"host": "127.0.0.1"}]}}}
    with pytest.raises(hydra_rs.InvalidConfigError, match="redis.name"):
        hydra_rs.Hydra(config)
