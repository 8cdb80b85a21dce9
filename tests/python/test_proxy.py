"""proxy_pass against SPEC.md sections 4 and 8: webserv in front of a stdlib
`http.server` upstream started by the test (a ThreadingHTTPServer in a thread
of this process, on a free 127.0.0.1 port) that echoes each request as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from harness import free_port, parse_responses, request_bytes, wait_until

TIMEOUT = 10  # seconds, for every client call

HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade")


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with JSON: upstream name, method, path, headers,
    body (chunked request bodies decoded here). Keep-alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT  # an idle kept-alive connection ends, bounded

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                assert self.rfile.read(2) == b"\r\n", "chunk data must end with CRLF"
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self) -> None:
        body = self.read_body()
        echo = {
            "upstream": self.server.name,
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Hop", "1")
            self.send_header("Connection", "X-Hop")
            self.send_header("Keep-Alive", "timeout=5")
            self.end_headers()
            data = json.dumps(echo).encode()
            for i in range(0, len(data), 7):
                piece = data[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        data = json.dumps(echo).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.path.startswith("/hop"):
            # Hop-by-hop fields an upstream may send: none reaches the client.
            self.send_header("Connection", "keep-alive, X-Hop")
            self.send_header("X-Hop", "1")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("Proxy-Authenticate", "Basic realm=up")
            self.send_header("Trailer", "X-Sum")
            self.send_header("Upgrade", "h2c")
            self.send_header("Proxy-Connection", "keep-alive")
            self.send_header("X-End", "kept")
        self.end_headers()
        self.wfile.write(data)

    # Every method token reaches the upstream (SPEC 9.3), custom ones too.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = answer
    do_FROBNICATE = do_PROPFIND = answer

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()


class EchoUpstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str):
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.name = name
        self.lock = threading.Lock()
        self.connections = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def upstream():
    """A factory of echo upstreams, all stopped after the test."""
    started: list[EchoUpstream] = []

    def start(name: str = "up") -> EchoUpstream:
        server = EchoUpstream(name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def headers_of(echo: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


PROXY = """
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    methods GET HEAD POST PUT DELETE;
    proxy_read_timeout 5s;

    location / { proxy_pass http://127.0.0.1:{up}; }
    location /api/ { proxy_pass http://127.0.0.1:{up}/v1/; }
    location /host/ {
        proxy_pass http://127.0.0.1:{up};
        proxy_set_header Host example.test;
        proxy_set_header X-Extra "from $remote_addr";
    }
}
"""


@pytest.fixture
def proxied(webserv, upstream):
    up = upstream()
    server = webserv.start(PROXY, up=up.port)
    return server, up


def test_get_is_forwarded(proxied):
    server, up = proxied
    r = requests.get(server.url + "/hello/world?a=1&b=%20", timeout=TIMEOUT)
    assert r.status_code == 200
    echo = r.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/hello/world?a=1&b=%20"
    assert echo["version"] == "HTTP/1.1"
    assert echo["body"] == ""
    headers = headers_of(echo)
    assert headers["host"] == [f"127.0.0.1:{up.port}"]
    assert headers["connection"] == ["keep-alive"]
    assert "content-length" not in headers
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Server"].lower().startswith("webserv")


def test_post_body_is_forwarded(proxied):
    server, _ = proxied
    body = json.dumps({"k": "v" * 5000}).encode()
    r = requests.post(server.url + "/submit", data=body, timeout=TIMEOUT,
                      headers={"Content-Type": "application/json"})
    echo = r.json()
    assert echo["method"] == "POST"
    assert echo["body"].encode("latin-1") == body
    headers = headers_of(echo)
    assert headers["content-length"] == [str(len(body))]
    assert headers["content-type"] == ["application/json"]


def test_chunked_request_body_is_forwarded_chunked(proxied):
    server, _ = proxied
    pieces = [b"alpha,", b"b" * 20000, b"omega"]
    r = requests.put(server.url + "/put", data=iter(pieces), timeout=TIMEOUT)
    echo = r.json()
    assert echo["method"] == "PUT"
    assert echo["body"].encode("latin-1") == b"".join(pieces)
    headers = headers_of(echo)
    assert headers["transfer-encoding"] == ["chunked"]
    assert "content-length" not in headers


def test_chunked_response_is_relayed_and_hop_by_hop_fields_dropped(proxied):
    server, _ = proxied
    r = requests.get(server.url + "/chunked", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.json()["path"] == "/chunked"
    assert "X-Hop" not in r.headers
    assert "Keep-Alive" not in r.headers


def test_prefix_rewriting(proxied):
    server, _ = proxied
    assert requests.get(server.url + "/api/x?q=1", timeout=TIMEOUT).json()["path"] == "/v1/x?q=1"
    assert requests.get(server.url + "/api/", timeout=TIMEOUT).json()["path"] == "/v1/"
    assert requests.get(server.url + "/api/a/../b", timeout=TIMEOUT).json()["path"] == "/v1/b"


def test_forwarded_headers(proxied):
    server, _ = proxied
    headers = headers_of(requests.get(server.url + "/f", timeout=TIMEOUT).json())
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-real-ip"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    # A client's own values: X-Forwarded-For is extended, the others replaced.
    sent = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "6.6.6.6", "X-Forwarded-Proto": "https"}
    headers = headers_of(requests.get(server.url + "/f", headers=sent, timeout=TIMEOUT).json())
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["x-real-ip"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]


def test_proxy_set_header_host(proxied):
    server, _ = proxied
    headers = headers_of(requests.get(server.url + "/host/x", timeout=TIMEOUT).json())
    assert headers["host"] == ["example.test"]
    assert headers["x-extra"] == ["from 127.0.0.1"]


def test_hop_by_hop_request_headers_are_dropped(proxied):
    server, _ = proxied
    sent = {
        "Connection": "keep-alive, X-Private",
        "X-Private": "secret",
        "Keep-Alive": "timeout=9",
        "TE": "trailers",
        "Upgrade": "websocket",
        "Proxy-Connection": "keep-alive",
        "X-Public": "ok",
    }
    with requests.Session() as session:
        headers = headers_of(session.get(server.url + "/h", headers=sent, timeout=TIMEOUT).json())
    assert headers["x-public"] == ["ok"]
    assert "x-private" not in headers
    for name in HOP_BY_HOP:
        if name != "connection":
            assert name not in headers, name
    assert headers["connection"] == ["keep-alive"]


def test_head_is_forwarded(proxied):
    server, _ = proxied
    r = server.request("HEAD", "/thing")
    assert r.status == 200
    assert r.header("Content-Length") == "1234"
    assert r.body == b""


def test_upstream_connections_are_reused(proxied):
    server, up = proxied
    for i in range(10):
        # Each request on a new client connection; the upstream one is kept.
        r = requests.get(server.url + f"/n{i}", timeout=TIMEOUT, headers={"Connection": "close"})
        assert r.json()["path"] == f"/n{i}"
    with up.lock:
        assert up.connections == 1


GROUP = """
upstream pool {
    server 127.0.0.1:{a} weight=3;
    server 127.0.0.1:{b};
}
server {
    listen 127.0.0.1:{port};
    proxy_connect_timeout 2s;
    location / { proxy_pass http://pool; }
}
"""


def test_weighted_round_robin(webserv, upstream):
    a, b = upstream("a"), upstream("b")
    server = webserv.start(GROUP, a=a.port, b=b.port)
    counts = {"a": 0, "b": 0}
    with requests.Session() as session:
        for _ in range(40):
            echo = session.get(server.url + "/w", timeout=TIMEOUT).json()
            counts[echo["upstream"]] += 1
            assert headers_of(echo)["host"] == ["pool"]
    assert counts == {"a": 30, "b": 10}


def test_one_upstream_down_all_requests_succeed(webserv, upstream):
    live = upstream("live")
    dead = free_port()
    server = webserv.start(GROUP, a=dead, b=live.port)
    for i in range(12):
        r = requests.get(server.url + f"/d{i}", timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json()["upstream"] == "live"


def test_all_upstreams_down_is_502(webserv):
    server = webserv.start(GROUP, a=free_port(), b=free_port())
    for _ in range(3):
        assert requests.get(server.url + "/x", timeout=TIMEOUT).status_code == 502


def test_pipelined_requests_through_the_proxy(proxied):
    server, _ = proxied
    data = request_bytes("GET", "/p1") + request_bytes("GET", "/p2") + request_bytes(
        "GET", "/p3", {"Connection": "close"})
    responses = parse_responses(server.raw(data))
    assert [json.loads(r.body)["path"] for r in responses] == ["/p1", "/p2", "/p3"]


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "FROBNICATE", "PROPFIND", "DELETE"])
def test_every_method_is_forwarded(proxied, method):
    # The server-level `methods` does not restrict a proxied location.
    server, _ = proxied
    r = requests.request(method, server.url + "/m?q=1", data=b"payload", timeout=TIMEOUT)
    assert r.status_code == 200
    echo = r.json()
    assert (echo["method"], echo["path"], echo["body"]) == (method, "/m?q=1", "payload")


LIMITED = """
server {
    listen 127.0.0.1:{port};
    location / { proxy_pass http://127.0.0.1:{up}; methods GET PATCH FROBNICATE; }
}
"""


def test_a_proxied_location_s_own_methods_give_405_with_allow(webserv, upstream):
    up = upstream()
    server = webserv.start(LIMITED, up=up.port)
    for method in ("PATCH", "FROBNICATE", "GET"):
        r = requests.request(method, server.url + "/x", timeout=TIMEOUT)
        assert (r.status_code, r.json()["method"]) == (200, method)
    for method in ("POST", "OPTIONS", "PURGE"):
        r = requests.request(method, server.url + "/x", timeout=TIMEOUT)
        assert r.status_code == 405, method
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert {"GET", "PATCH", "FROBNICATE"} <= allowed


def test_hop_by_hop_response_headers_are_dropped(proxied):
    server, _ = proxied
    r = requests.get(server.url + "/hop", timeout=TIMEOUT)
    assert r.status_code == 200
    got = {k.lower() for k in r.headers}
    for name in ("x-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade",
                 "proxy-connection"):
        assert name not in got, name
    assert r.headers["X-End"] == "kept"
    assert r.headers.get("Connection", "keep-alive").lower() == "keep-alive"


def test_proxy_authorization_is_not_forwarded(proxied):
    server, _ = proxied
    headers = headers_of(requests.get(server.url + "/a", timeout=TIMEOUT,
                                      headers={"Proxy-Authorization": "Basic eDp5",
                                               "Authorization": "Basic YTpi"}).json())
    assert "proxy-authorization" not in headers
    assert headers["authorization"] == ["Basic YTpi"]


NEXT = """
upstream pool {
    server 127.0.0.1:{dead};
    server 127.0.0.1:{live};
}
server {
    listen 127.0.0.1:{port};
    proxy_connect_timeout 2s;
    location /retry/ { proxy_pass http://pool; proxy_next_upstream error timeout; }
    location /once/ { proxy_pass http://pool; proxy_next_upstream off; }
}
"""


def test_next_upstream_on_a_refused_server(webserv, upstream):
    live = upstream("live")
    server = webserv.start(NEXT, dead=free_port(), live=live.port)
    # The first request goes to the refused server and is retried on the
    # live one; a POST body is replayed there whole.
    r = requests.post(server.url + "/retry/x", data=b"body", timeout=TIMEOUT)
    assert r.status_code == 200
    assert (r.json()["upstream"], r.json()["body"]) == ("live", "body")
    for i in range(4):
        assert requests.get(server.url + f"/retry/{i}", timeout=TIMEOUT).json()["upstream"] == "live"


def test_next_upstream_off_answers_502_for_a_refused_server(webserv, upstream):
    live = upstream("live")
    server = webserv.start(NEXT, dead=free_port(), live=live.port)
    # Round-robin starts with the refused server: no retry, 502.
    assert requests.get(server.url + "/once/x", timeout=TIMEOUT).status_code == 502


WS = """
server {
    listen 127.0.0.1:{port};
    proxy_read_timeout 5s;
    location /echo { proxy_pass http://127.0.0.1:{ws}; }
}
"""

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


@pytest.fixture
def ws_echo():
    """examples/ws_echo.py on a free port, stopped after the test."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "ws_echo.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_until(listening, TIMEOUT, "ws_echo.py listening")
        yield port
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (RFC 6455 5.2): FIN, opcode, masked payload."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    def need(n: int) -> None:
        while len(buf) < n:
            piece = sock.recv(65536)
            assert piece, "closed mid-frame"
            buf.extend(piece)
    need(2)
    opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        need(4)
        n, at = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        need(10)
        n, at = int.from_bytes(buf[2:10], "big"), 10
    need(at + n)
    payload = bytes(buf[at:at + n])
    del buf[:at + n]
    return opcode, payload


def test_websocket_echo_round_trip(webserv, ws_echo):
    server = webserv.start(WS, ws=ws_echo)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall((f"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            piece = sock.recv(4096)
            assert piece, "closed before the 101"
            buf.extend(piece)
        end = buf.index(b"\r\n\r\n") + 4
        head = bytes(buf[:end]).decode("latin-1")
        del buf[:end]
        assert head.startswith("HTTP/1.1 101 "), head
        assert "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in head.lower()
        for message in (b"hello", "caf\u00e9".encode(), b"x" * 300, b"y" * 70000):
            sock.sendall(masked(0x1, message))
            assert read_frame(sock, buf) == (0x1, message)
        sock.sendall(masked(0x2, bytes(range(256))))
        assert read_frame(sock, buf) == (0x2, bytes(range(256)))
        sock.sendall(masked(0x9, b"are you there"))
        assert read_frame(sock, buf) == (0xA, b"are you there")
        sock.sendall(masked(0x8, (1000).to_bytes(2, "big")))
        opcode, _ = read_frame(sock, buf)
        assert opcode == 0x8
        # The upstream closes after its close frame: so does the tunnel.
        sock.settimeout(TIMEOUT)
        assert sock.recv(1) == b""
