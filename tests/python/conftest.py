"""Fixtures that run the real webserv binary (see harness.py).

    def test_hello(webserv, tmp_path):
        root = write_tree(tmp_path / "www", {"index.html": "hi"})
        server = webserv.start(CONFIG, root=root)   # CONFIG uses {port}, {root}
        assert requests.get(server.url + "/").text == "hi"

`webserv` is per test; `webserv_module` is shared by a module's tests (faster,
for servers that no test changes). Both stop every server they started
(SIGTERM, then SIGKILL) and fail the test if one will not exit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import ServerFactory, find_binary


@pytest.fixture(scope="session")
def webserv_bin() -> Path:
    """The binary under test: WEBSERV_BIN, else target/release, else target/debug."""
    try:
        return find_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def webserv(webserv_bin, tmp_path):
    """A factory: `webserv.start(config_text, ports=1, **placeholders) -> Server`."""
    factory = ServerFactory(tmp_path / "servers", webserv_bin)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def webserv_module(webserv_bin, tmp_path_factory):
    """Like `webserv`, shared by every test of a module."""
    factory = ServerFactory(tmp_path_factory.mktemp("servers"), webserv_bin)
    yield factory
    factory.close()
