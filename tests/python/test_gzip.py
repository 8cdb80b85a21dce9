"""SPEC section 9.5 with a real HTTP client: `requests` asks for gzip by
default and decompresses on its own, so these tests check the headers the
server sent and that what requests hands back equals the file."""

from __future__ import annotations

import gzip

import requests

from harness import write_tree

TIMEOUT = 10  # seconds, for every client call

CONFIG = """
server_tokens off;
server {
    listen 127.0.0.1:{port};
    root {root};
    gzip on;
    add_header X-Site main;
    location /assets/ {
        gzip_static on;
        expires 1h;
    }
}
"""

PAGE = "".join(f"<p>paragraph {i}: the quick brown fox</p>\n" for i in range(4000))
CSS = "body { margin: 0; color: #123 }\n" * 200


def start(webserv, tmp_path):
    root = write_tree(tmp_path / "www", {
        "page.html": PAGE,
        "assets/site.css": CSS,
        "assets/site.css.gz": gzip.compress(CSS.encode()),
        "tiny.html": "<p>hi</p>",
    })
    return webserv.start(CONFIG, root=root)


def check_gzipped_page(r):
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers["ETag"].startswith('W/"')
    assert r.headers["Server"] == "webserv"
    assert r.headers["X-Site"] == "main"
    assert r.text == PAGE


def test_a_cached_pages_compressed_copy_goes_with_its_length(webserv, tmp_path):
    # The page (some 180 KB) is cached by default: its compressed copy is
    # made once, kept with the entry, and sent with a Content-Length.
    server = start(webserv, tmp_path)
    for _ in range(2):
        r = requests.get(server.url + "/page.html", timeout=TIMEOUT)
        check_gzipped_page(r)
        assert "Transfer-Encoding" not in r.headers
        assert int(r.headers["Content-Length"]) < len(PAGE) // 3


def test_on_the_fly_gzip_round_trips(webserv, tmp_path):
    # Without the cache, the file is compressed as it is sent, chunked.
    root = write_tree(tmp_path / "www", {"page.html": PAGE})
    server = webserv.start("open_file_cache off;\n" + CONFIG, root=root)
    r = requests.get(server.url + "/page.html", timeout=TIMEOUT)
    check_gzipped_page(r)
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in r.headers


def test_identity_when_refused_or_too_small(webserv, tmp_path):
    server = start(webserv, tmp_path)
    r = requests.get(server.url + "/page.html", headers={"Accept-Encoding": "gzip;q=0"},
                     timeout=TIMEOUT)
    assert "Content-Encoding" not in r.headers
    assert r.headers["Content-Length"] == str(len(PAGE))
    assert r.text == PAGE
    r = requests.get(server.url + "/tiny.html", timeout=TIMEOUT)
    assert "Content-Encoding" not in r.headers
    assert r.text == "<p>hi</p>"


def test_gzip_static_and_expires(webserv, tmp_path):
    server = start(webserv, tmp_path)
    r = requests.get(server.url + "/assets/site.css", timeout=TIMEOUT)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Content-Type"] == "text/css"
    assert r.headers["Cache-Control"] == "max-age=3600"
    assert "Expires" in r.headers
    # The inner level sets no add_header: the server's list applies.
    assert r.headers["X-Site"] == "main"
    assert r.text == CSS
    # A range of the .gz, as nginx.
    r = requests.get(server.url + "/assets/site.css", headers={"Range": "bytes=0-1"},
                     timeout=TIMEOUT, stream=True)
    assert r.status_code == 206
    assert r.raw.read(decode_content=False) == b"\x1f\x8b"


def test_not_found_page_has_no_version(webserv, tmp_path):
    server = start(webserv, tmp_path)
    r = requests.get(server.url + "/missing", timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.headers["Server"] == "webserv"
    assert "X-Site" not in r.headers
    assert "<small>webserv</small>" in r.text
