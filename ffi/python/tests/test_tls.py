"""TLS from Python: a Hydra whose JSON config holds ``redis.tls`` (a CA file)
requests the Rust echo example (its own process, ``rediss://`` from
``HYDRA_REDIS_URL`` trusting the CA through ``SSL_CERT_FILE``) over a
redis-server TLS port; a wrong CA is refused with a clear error. Certificates
are made by the ``openssl`` command line (``scripts/test`` installs it)."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import hydra_rs
from conftest import WAIT, EchoService, _echo_binary, _free_port, _redis_command, config


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(directory: Path) -> None:
    """ca.pem (a CA), server.pem/server.key (SANs 127.0.0.1 and localhost),
    other-ca.pem (an unrelated CA)."""
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=hydra {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=directory)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=redis test server", cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=directory)


class TlsRedis:
    """redis-server with a plain port (for checks) and a TLS port."""

    def __init__(self, directory: Path) -> None:
        self.port, self.tls_port = _free_port(), _free_port()
        self.log = open(directory / "redis.log", "w+b")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--tls-port", str(self.tls_port),
             "--tls-cert-file", str(directory / "server.pem"), "--tls-key-file", str(directory / "server.key"),
             "--tls-ca-cert-file", str(directory / "ca.pem"), "--tls-auth-clients", "no"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if _redis_command(self.port, "PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server with TLS did not start")

    def tls_url(self, db: int = 15) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/{db}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def tls_setup():
    if not shutil.which("openssl"):
        pytest.fail("the openssl command is missing (scripts/test installs it)")
    directory = Path(tempfile.mkdtemp(prefix="hydra-py-tls-"))
    _make_certificates(directory)
    server = TlsRedis(directory)
    yield directory, server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def test_a_python_service_requests_the_rust_echo_over_tls(tls_setup, monkeypatch):
    directory, server = tls_setup
    ca = str(directory / "ca.pem")
    # The echo reads only HYDRA_REDIS_URL: rediss:// trusts the system's store, pointed at the CA here.
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    echo = EchoService(_echo_binary(), "rust-echo", server.tls_url())
    try:
        document = config("py-tls", "unused")
        document["hydra"]["redis"] = {"url": server.tls_url(), "tls": {"ca": ca}}
        with hydra_rs.Hydra(document) as h:
            h.register_service()
            for n in range(5):
                reply = h.request("rust-echo:/", {"n": n, "secure": True}, timeout=WAIT)
                assert reply["body"] == {"echo": {"n": n, "secure": True}}
            response = h.make_api_request("rust-echo:[post]/v1/rust-echo/echo", {"over": "tls"}, timeout=WAIT)
            assert response["statusCode"] == 200
            assert response["body"]["result"]["over"] == "tls"
        # Nothing of theirs came in on the plain port: only this check's own connection is there.
        clients = _redis_command(server.port, "CLIENT", "LIST").decode()
        plain = [line for line in clients.splitlines() if f"laddr=127.0.0.1:{server.port} " in line]
        assert len(plain) == 1, clients
    finally:
        echo.stop()
        os.unlink(echo.log.name)


def test_a_wrong_ca_is_refused_clearly(tls_setup):
    directory, server = tls_setup
    document = config("py-wrong-ca", "unused", connectTimeout=1000)
    document["hydra"]["redis"] = {"url": server.tls_url(), "tls": {"ca": str(directory / "other-ca.pem")}}
    started = time.monotonic()
    with pytest.raises(hydra_rs.RedisError) as raised:
        hydra_rs.Hydra(document)
    assert time.monotonic() - started < 5
    text = str(raised.value)
    assert "UnknownIssuer" in text and "redis.tls.ca" in text, text
    document["hydra"]["redis"]["tls"] = {"ca": str(directory / "missing.pem")}
    with pytest.raises(hydra_rs.InvalidConfigError) as raised:
        hydra_rs.Hydra(document)
    assert "redis.tls.ca" in str(raised.value) and "missing.pem" in str(raised.value)
