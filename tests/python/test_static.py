"""The static-file core against SPEC.md sections 1 and 3-5: files, listings,
redirects, conditional and range requests, methods, virtual hosts, error
pages, persistence, robustness and signals."""

from __future__ import annotations

import html
import re
import signal
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from harness import (
    Server,
    parse_response,
    parse_responses,
    recv_all,
    request_bytes,
    wait_until,
    write_tree,
)

TIMEOUT = 10  # seconds, for every client call


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\xff")) + chunk(b"IEND", b""))


DIGITS = b"0123456789" * 100  # 1000 bytes: easy to check any range
BIG_SIZE = 50 * 1024 * 1024

MAIN_SITE: dict[str, bytes | str] = {
    "index.html": "<h1>main index</h1>",
    "hello.txt": "hello, world\n",
    "page.html": "<p>page</p>",
    "style.css": "body { color: green }",
    "app.js": "console.log(1);",
    "data.json": '{"ok": true}',
    "pixel.png": tiny_png(),
    "logo.svg": '<svg xmlns="http://www.w3.org/2000/svg"/>',
    "blob.xyzzy": b"\x00\x01\x02",
    "digits.txt": DIGITS,
    "errors/404.html": "custom not found page",
    "sub/index.html": "sub index",
    "files/a.txt": "a",
    "files/with space.txt": "space",
    "files/a&b <c>.txt": "special",
    "files/zdir/inner.txt": "inner",
    "files/docs/readme.txt": "docs",
    "private/secret.txt": "secret",
    "readonly/r.txt": "read only",
}
SECOND_SITE: dict[str, bytes | str] = {"index.html": "second host"}

# The first server is NOT the default one: an unknown Host must pick the
# default_server, not merely the first.
CONFIG = """
server {
    listen 127.0.0.1:{port};
    server_name second.test;
    root {second};
}
server {
    listen 127.0.0.1:{port} default_server;
    server_name localhost main.test;
    root {root};
    location /files/ { autoindex on; }
    location /private/ { autoindex off; }
    location /old { return 301 /new; }
    location /teapot { return 418 "I'm a teapot"; }
    location /readonly/ { methods GET; }
    error_page 404 /errors/404.html;
    {extra}
}
"""


def make_sites(base: Path) -> dict[str, Path]:
    root = write_tree(base / "main", MAIN_SITE)
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG_SIZE)  # sparse: 50 MB on the wire, nothing on disk
    return {"root": root, "second": write_tree(base / "second", SECOND_SITE)}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    return make_sites(tmp_path_factory.mktemp("sites"))


@pytest.fixture(scope="module")
def server(webserv_module, sites) -> Server:
    """One server for every test that leaves it as it found it."""
    return webserv_module.start(CONFIG, extra="", **sites)


def get(server: Server, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("allow_redirects", False)
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.get(server.url + path, **kwargs)


def media_type(content_type: str | None) -> str:
    """`text/html; charset=utf-8` -> `text/html`."""
    return (content_type or "").split(";")[0].strip().lower()


def http_date(value: str) -> float:
    return parsedate_to_datetime(value).timestamp()


# ---- files ---------------------------------------------------------------------


def test_get_file_has_every_header(server, sites):
    r = get(server, "/hello.txt")
    assert r.status_code == 200
    assert r.content == b"hello, world\n"
    assert media_type(r.headers.get("Content-Type")) == "text/plain"
    assert r.headers["Content-Length"] == str(len(r.content))
    mtime = int((sites["root"] / "hello.txt").stat().st_mtime)
    assert http_date(r.headers["Last-Modified"]) == mtime
    assert re.fullmatch(r'(W/)?"[^"]*"', r.headers["ETag"])
    assert abs(http_date(r.headers["Date"]) - time.time()) < 60
    assert r.headers["Server"]


@pytest.mark.parametrize("path, expected", [
    ("/page.html", {"text/html"}),
    ("/style.css", {"text/css"}),
    ("/app.js", {"application/javascript", "text/javascript"}),
    ("/data.json", {"application/json"}),
    ("/pixel.png", {"image/png"}),
    ("/logo.svg", {"image/svg+xml"}),
    ("/blob.xyzzy", {"application/octet-stream"}),
])
def test_content_type_from_extension(server, path, expected):
    r = get(server, path)
    assert r.status_code == 200
    assert media_type(r.headers.get("Content-Type")) in expected


def test_head_has_get_headers_and_no_body(server):
    data = server.raw(request_bytes("HEAD", "/hello.txt", {"Connection": "close"}))
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep and body == b"", f"HEAD sent a body: {data!r}"
    head_response = parse_response(head + sep, head_only=True)
    get_response = server.request("GET", "/hello.txt")
    assert head_response.status == 200
    for name in ("Content-Type", "Content-Length", "Last-Modified", "ETag"):
        assert head_response.header(name) == get_response.header(name), name
    for name in ("Date", "Server"):
        assert head_response.header(name)


def test_missing_file_is_404_with_date_and_server(server):
    r = server.request("GET", "/no/such/file.txt")
    assert r.status == 404
    assert r.header("Date") and r.header("Server")


def test_custom_error_page_keeps_original_status(server):
    r = get(server, "/missing")
    assert r.status_code == 404
    assert "custom not found page" in r.text


def test_builtin_error_page_without_error_page(server):
    r = get(server, "/missing", headers={"Host": "second.test"})
    assert r.status_code == 404
    assert media_type(r.headers.get("Content-Type")) == "text/html"
    assert "404" in r.text and "custom not found" not in r.text


# ---- paths and directories -------------------------------------------------------------


@pytest.mark.parametrize("path, location", [
    ("/files", "/files/"),
    ("/files?x=1&y=2", "/files/?x=1&y=2"),
    ("/files/zdir", "/files/zdir/"),
])
def test_directory_without_slash_redirects_keeping_query(server, path, location):
    r = get(server, path)
    assert r.status_code == 301
    target = urlsplit(r.headers["Location"])
    expected = urlsplit(location)
    assert (target.path, target.query) == (expected.path, expected.query)


@pytest.mark.parametrize("path, body", [("/", "main index"), ("/sub/", "sub index")])
def test_index_file_served_for_directory(server, path, body):
    r = get(server, path)
    assert r.status_code == 200
    assert body in r.text
    assert media_type(r.headers.get("Content-Type")) == "text/html"


def listing_links(server: Server, path: str) -> tuple[str, list[str]]:
    """The listing page and the absolute URLs of its entries (parent link excluded)."""
    r = get(server, path)
    assert r.status_code == 200
    assert media_type(r.headers.get("Content-Type")) == "text/html"
    base = server.url + path
    links = []
    for href in re.findall(r'href="([^"]*)"', r.text):
        url = urljoin(base, html.unescape(href))
        parts = urlsplit(url)
        if parts.path.startswith(urlsplit(base).path) and url != base and not parts.query:
            links.append(url)
    return r.text, links


def test_autoindex_escapes_names(server):
    page, _ = listing_links(server, "/files/")
    assert "a&amp;b &lt;c&gt;.txt" in page
    assert "<c>" not in page


def test_autoindex_lists_directories_first(server):
    _, links = listing_links(server, "/files/")
    kinds = ["dir" if url.endswith("/") else "file" for url in links]
    assert kinds.count("dir") == 2 and kinds.count("file") == 3, links
    assert "dir" not in kinds[kinds.index("file"):], f"directories must come first: {links}"


def test_autoindex_links_resolve(server):
    _, links = listing_links(server, "/files/")
    bodies = {requests.get(url, timeout=TIMEOUT).text for url in links if not url.endswith("/")}
    assert bodies == {"a", "space", "special"}
    for url in links:
        assert requests.get(url, timeout=TIMEOUT).status_code == 200, url


def test_autoindex_off_is_403(server):
    assert get(server, "/private/").status_code == 403


@pytest.mark.parametrize("target, status", [
    ("/sub/../hello.txt", 200),
    ("//hello.txt", 200),
    ("/./hello.txt", 200),
    ("/%68ello.txt", 200),
    ("/../hello.txt", 400),
    ("/sub/../../hello.txt", 400),
    ("/%2e%2e/hello.txt", 400),
    ("/hello%00.txt", 400),
])
def test_path_normalisation(server, target, status):
    assert server.request("GET", target).status == status


# ---- conditional and range requests ------------------------------------------------


def test_if_none_match_gives_304(server):
    etag = get(server, "/hello.txt").headers["ETag"]
    r = get(server, "/hello.txt", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""


def test_if_modified_since(server):
    last_modified = get(server, "/hello.txt").headers["Last-Modified"]
    assert get(server, "/hello.txt", headers={"If-Modified-Since": last_modified}).status_code == 304
    long_ago = formatdate(0, usegmt=True)
    assert get(server, "/hello.txt", headers={"If-Modified-Since": long_ago}).status_code == 200


def test_if_none_match_wins_over_if_modified_since(server):
    last_modified = get(server, "/hello.txt").headers["Last-Modified"]
    headers = {"If-None-Match": '"not-the-etag"', "If-Modified-Since": last_modified}
    assert get(server, "/hello.txt", headers=headers).status_code == 200


@pytest.mark.parametrize("spec, first, last", [
    ("bytes=0-9", 0, 9),
    ("bytes=990-", 990, 999),
    ("bytes=-5", 995, 999),
    ("bytes=500-100000", 500, 999),
])
def test_range_gives_206(server, spec, first, last):
    r = get(server, "/digits.txt", headers={"Range": spec})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(DIGITS)}"
    assert r.content == DIGITS[first:last + 1]
    assert r.headers["Content-Length"] == str(last - first + 1)


def test_unsatisfiable_range_is_416(server):
    r = get(server, "/digits.txt", headers={"Range": "bytes=5000-6000"})
    assert r.status_code == 416


# ---- return, methods -------------------------------------------------------------


def test_return_redirect(server):
    r = get(server, "/old")
    assert r.status_code == 301
    assert urlsplit(r.headers["Location"]).path == "/new"


def test_return_text(server):
    r = get(server, "/teapot")
    assert r.status_code == 418
    assert r.text == "I'm a teapot"


def allowed(response) -> set[str]:
    value = response.header("Allow")
    assert value, "405 without Allow"
    return {m.strip() for m in value.split(",")}


@pytest.mark.parametrize("method, target, allow", [
    ("POST", "/hello.txt", {"GET", "HEAD"}),
    ("PUT", "/hello.txt", {"GET", "HEAD"}),
    ("DELETE", "/hello.txt", {"GET", "HEAD"}),
    ("DELETE", "/readonly/r.txt", {"GET"}),
    ("HEAD", "/readonly/r.txt", {"GET"}),
])
def test_method_not_allowed_lists_allow(server, method, target, allow):
    r = server.request(method, target, body=b"x" if method in ("POST", "PUT") else b"")
    assert r.status == 405
    assert allowed(r) == allow


@pytest.mark.parametrize("method", ["BREW", "PATCH", "get", "Get"])
def test_unknown_or_lowercase_method_is_501(server, method):
    r = server.request(method, "/hello.txt")
    assert r.status == 501
    assert r.header("Date") and r.header("Server")


def test_http11_without_host_is_400(server):
    data = server.raw(b"GET /hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert parse_response(data).status == 400


# ---- virtual hosts ---------------------------------------------------------------------


@pytest.mark.parametrize("host, body", [
    ("second.test", "second host"),
    ("SECOND.Test", "second host"),
    ("second.test:1234", "second host"),
    ("localhost", "main index"),
    ("MAIN.TEST:80", "main index"),
    ("unknown.example", "main index"),  # the default_server, not the first server
])
def test_virtual_host_chosen_by_host(server, host, body):
    r = get(server, "/", headers={"Host": host})
    assert r.status_code == 200
    assert body in r.text


# ---- connections -------------------------------------------------------------------------


def test_keep_alive_thousand_requests_on_one_session(server):
    with requests.Session() as session:
        statuses = [session.get(server.url + "/hello.txt", timeout=TIMEOUT).status_code
                    for _ in range(1000)]
    assert statuses == [200] * 1000


def test_keep_alive_reuses_the_connection(server):
    with server.open() as conn:
        for path, body in [("/hello.txt", b"hello, world\n"), ("/page.html", b"<p>page</p>")] * 3:
            r = conn.request("GET", path)
            assert (r.status, r.body) == (200, body)


def test_http10_closes_by_default(server):
    started = time.monotonic()
    data = server.raw(b"GET /hello.txt HTTP/1.0\r\n\r\n", timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT, "the server kept the HTTP/1.0 connection open"
    assert parse_response(data).body == b"hello, world\n"


def test_concurrent_clients(server):
    clients = 200
    barrier = threading.Barrier(clients, timeout=TIMEOUT)

    def client(_: int) -> int:
        with server.connect(timeout=TIMEOUT) as sock:
            barrier.wait()  # every connection is open before any request is sent
            sock.sendall(request_bytes("GET", "/hello.txt", {"Connection": "close"}))
            return parse_response(recv_all(sock, TIMEOUT)).status

    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(client, range(clients)))
    assert statuses == [200] * clients


def test_pipelined_requests_answered_in_order(server):
    both = (request_bytes("GET", "/hello.txt")
            + request_bytes("GET", "/page.html", {"Connection": "close"}))
    responses = parse_responses(server.raw(both))
    assert [(r.status, r.body) for r in responses] == [
        (200, b"hello, world\n"), (200, b"<p>page</p>")]


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
    b"\x00\xff\xfe\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost localhost\r\n\r\n",
], ids=["tls-client-hello", "binary", "one-word", "header-without-colon"])
def test_garbage_then_next_connection_served(server, garbage):
    answer = server.raw(garbage, timeout=TIMEOUT)
    if answer:  # the server may also just close
        assert parse_response(answer).status == 400
    assert server.request("GET", "/hello.txt").status == 200


@pytest.mark.parametrize("how", ["reset", "close"])
def test_client_vanishing_mid_download(server, how):
    sock = server.connect(timeout=TIMEOUT)
    try:
        sock.sendall(request_bytes("GET", "/big.bin"))
        received = 0
        while received < 1024 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "server closed before sending 1 MiB"
            received += len(chunk)
        if how == "reset":  # SO_LINGER 0: close sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    assert server.request("GET", "/hello.txt", timeout=TIMEOUT).status == 200
    assert server.alive()


# ---- signals ----------------------------------------------------------------------------


@pytest.fixture
def own_server(webserv, tmp_path):
    """A server of its own, for tests that reload or stop it."""
    sites = make_sites(tmp_path / "sites")
    server = webserv.start(CONFIG, extra="", **sites)
    return server


def test_sigterm_exits_zero(own_server):
    assert own_server.request("GET", "/hello.txt").status == 200
    own_server.proc.send_signal(signal.SIGTERM)
    assert own_server.proc.wait(timeout=TIMEOUT) == 0


def answers(server: Server, target: str, body: bytes) -> bool:
    try:
        r = server.request("GET", target, timeout=2)
    except (OSError, ValueError):
        return False
    return r.status == 200 and r.body == body


def test_sighup_reload_keeps_connections(own_server):
    with own_server.open() as conn:
        assert conn.request("GET", "/hello.txt").status == 200
        assert own_server.request("GET", "/reload").status == 404

        own_server.reload(CONFIG.replace("{extra}", 'location /reload { return 200 "reloaded"; }'))
        wait_until(lambda: answers(own_server, "/reload", b"reloaded"), TIMEOUT,
                   "the reloaded config to answer /reload")

        r = conn.request("GET", "/hello.txt")  # opened before the reload, still served
        assert (r.status, r.body) == (200, b"hello, world\n")
    assert own_server.alive()


def test_sighup_with_bad_config_keeps_old_one(own_server):
    own_server.reload("server {\n    lisen 1;\n}\n")
    wait_until(lambda: "lisen" in own_server.output(), TIMEOUT,
               "the diagnostics of the refused config")
    assert own_server.alive()
    assert own_server.request("GET", "/hello.txt").body == b"hello, world\n"
    assert get(own_server, "/teapot").status_code == 418
