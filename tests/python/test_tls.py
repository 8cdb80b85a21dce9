"""TLS from a Python client (SPEC section 9.2): a verifying `requests` GET,
keep-alive in a session, and plain HTTP sent to the TLS port.

The certificate is made here, per run, never committed: with the `openssl`
command when it is installed, otherwise with the repository's own
`cargo run --release --example selfsigned` (rcgen), which a clean clone
under `make test` can always build.

Run: python3 -m pytest -q tests/python/test_tls.py
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness import REPO, parse_response, request_bytes, write_tree

TIMEOUT = 10  # seconds, for every client call

CONFIG = """
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root};
}
"""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "localhost.crt", directory / "localhost.key"
    if shutil.which("openssl"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "365",
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )
    else:
        subprocess.run(
            ["cargo", "run", "--quiet", "--release", "--example", "selfsigned", "--",
             str(directory), "localhost", "127.0.0.1"],
            cwd=REPO, check=True, capture_output=True, timeout=900,
        )
    assert cert.is_file() and key.is_file()
    return cert, key


@pytest.fixture(scope="module")
def tls(webserv_module, tmp_path_factory):
    """One TLS server for the module, and the certificate it shows."""
    base = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(base / "certs")
    root = write_tree(base / "www", {"index.html": "hello over tls", "two.txt": "second"})
    server = webserv_module.start(CONFIG, cert=cert, key=key, root=root)
    return server, cert


def test_verifying_get(tls):
    server, cert = tls
    url = f"https://localhost:{server.port}/"
    response = requests.get(url, verify=str(cert), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == "hello over tls"
    assert response.headers["Content-Length"] == "14"
    assert "Date" in response.headers and "Server" in response.headers
    # The certificate is really checked: without it as a trust anchor the
    # client refuses the server.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=TIMEOUT)


def test_keep_alive_session(tls):
    server, cert = tls
    # `verify` per request: a session's own is overridden by
    # REQUESTS_CA_BUNDLE when that is set.
    with requests.Session() as session:
        base = f"https://127.0.0.1:{server.port}"
        first = session.get(f"{base}/", verify=str(cert), timeout=TIMEOUT)
        second = session.get(f"{base}/two.txt", verify=str(cert), timeout=TIMEOUT)
    assert (first.status_code, first.text) == (200, "hello over tls")
    assert (second.status_code, second.text) == (200, "second")


def test_plain_http_on_the_tls_port_gets_400_then_close(tls):
    server, _ = tls
    started = time.monotonic()
    # No `Connection: close`: the server must close by itself.
    data = server.raw(request_bytes("GET", "/", {"Host": "localhost"}), timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    response = parse_response(data)
    assert response.status == 400
    assert response.header("Connection") == "close"
    assert elapsed < TIMEOUT - 1, f"no close after the 400 ({elapsed:.1f}s)"
