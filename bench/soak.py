#!/usr/bin/env python3
"""bench/soak.py: the load, the samples and the verdict of `make soak`.

bench/soak.sh starts webserv and calls

    soak.py upstream PORT PERIOD       a small HTTP/1.1 upstream that goes down
                                       and up every PERIOD seconds
    soak.py load PID SECS PORT TLS_PORT STORE...
                                       the mixed load against webserv (PID), for
                                       SECS seconds; TLS_PORT 0 leaves TLS out

`load` samples the server every 10 s (VmRSS, open descriptors, child
processes, temporary files in the upload stores), prints the samples as a
table, counts the statuses each kind of client got, and ends with a verdict:
exit status 0 when everything holds, 1 otherwise. Only the standard library.
"""

import os
import random
import socket
import ssl
import sys
import threading
import time
from collections import Counter, defaultdict

HOST = "127.0.0.1"
SAMPLE_EVERY = 10.0
# What each kind of client may get: anything else is unexpected.
# "closed" is the server closing without a response, "aborted" a request the
# client itself abandoned on purpose.
ALLOWED = {
    "static-keepalive": {200, 404},
    "static-close": {200},
    "put-upload": {201, 204},
    "multipart-upload": {201},
    "delete": {204},
    "aborted-upload": {"aborted"},
    "cgi-fast": {200},
    "cgi-timeout": {504},
    "cgi-crash": {502},
    "cgi-post": {200},
    "proxy": {200, 502, 504},
    "proxy-post": {200, 502, 504},
    "slowloris": {408, "closed"},
    "tls": {200},
}


# ---- a flapping upstream ------------------------------------------------------


def upstream(port, period):
    """Serves `200 up` with keep-alive for PERIOD seconds, then refuses
    connections (and drops the open ones) for PERIOD seconds, and so on."""
    open_socks = set()
    lock = threading.Lock()

    def handle(conn):
        conn.settimeout(5)  # idle keep-alive connections end after 5 s
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                chunked = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                    if name.strip().lower() == b"transfer-encoding":
                        chunked = True
                if chunked:
                    while not buf.endswith(b"0\r\n\r\n"):
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = b""
                else:
                    while len(buf) < length:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nup\n")
        except OSError:
            return
        finally:
            with lock:
                open_socks.discard(conn)
            conn.close()

    while True:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(128)
        listener.settimeout(0.2)
        up_until = time.monotonic() + period
        while time.monotonic() < up_until:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            conn.settimeout(None)
            with lock:
                open_socks.add(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
        listener.close()
        with lock:
            for conn in list(open_socks):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        time.sleep(period)


# ---- HTTP client bits ----------------------------------------------------------


class Closed(Exception):
    """The server closed the connection before a whole response."""


def read_response(sock, buf=b"", head_only=False):
    """Reads one response: (status, body, rest of buf, server closes)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise Closed()
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only or status in (204, 304) or status < 200:
        body = b""
    elif "content-length" in headers:
        length = int(headers["content-length"])
        while len(buf) < length:
            data = sock.recv(65536)
            if not data:
                raise Closed()
            buf += data
        body, buf = buf[:length], buf[length:]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise Closed()
                buf += data
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                data = sock.recv(65536)
                if not data:
                    raise Closed()
                buf += data
            body += buf[:size]
            buf = buf[size + 2 :]
            if size == 0:
                break
    else:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
        body, buf = buf, b""
    closes = headers.get("connection", "").lower() == "close"
    return status, headers, body, buf, closes


def connect(port, timeout=15):
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def one_request(port, request, timeout=15):
    """A request on a new connection; its status ("closed" if none)."""
    sock = connect(port, timeout)
    try:
        sock.sendall(request)
        status, headers, body, _, _ = read_response(sock)
        return status, headers, body
    except Closed:
        return "closed", {}, b""
    finally:
        sock.close()


# ---- the load ------------------------------------------------------------------


class Load:
    def __init__(self, port, tls_port, until):
        self.port = port
        self.tls_port = tls_port
        self.until = until
        self.counts = defaultdict(Counter)
        self.lock = threading.Lock()
        self.serial = 0

    def running(self):
        return time.monotonic() < self.until

    def count(self, kind, status):
        with self.lock:
            self.counts[kind][status] += 1

    def next_id(self):
        with self.lock:
            self.serial += 1
            return self.serial

    def loop(self, kind, step, pause):
        """Runs `step` until the end, `pause` seconds apart; an exception
        counts as "error: ..." (unexpected for every kind)."""
        rng = random.Random(kind)
        while self.running():
            try:
                step()
            except Exception as err:  # noqa: BLE001 (counted, never hidden)
                self.count(kind, f"error: {type(err).__name__}: {err}"[:80])
                time.sleep(0.5)
            time.sleep(pause * (0.5 + rng.random()))

    # Each step makes one or a few requests and counts their statuses.

    def static_keepalive(self):
        sock = connect(self.port)
        buf = b""
        try:
            for path in ["/index.html", "/64k.bin", "/missing", "/index.html"] * 5:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                status, _, body, buf, _ = read_response(sock, buf)
                if path == "/64k.bin" and status == 200 and len(body) != 65536:
                    status = f"short body {len(body)}"
                self.count("static-keepalive", status)
                time.sleep(0.02)
        finally:
            sock.close()

    def static_close(self):
        status, _, _ = one_request(
            self.port, b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        self.count("static-close", status)

    def put_upload(self):
        name = f"put-{self.next_id()}.bin"
        body = os.urandom(256 * 1024)
        status, _, _ = one_request(
            self.port,
            f"PUT /up/{name} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body,
        )
        self.count("put-upload", status)
        if status in (201, 204):
            self.delete(f"/up/{name}")

    def delete(self, path):
        status, _, _ = one_request(
            self.port, f"DELETE {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        self.count("delete", status)

    def multipart_upload(self):
        data = os.urandom(32 * 1024)
        payload = (
            b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"m.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--XyZ--\r\n"
        )
        status, headers, _ = one_request(
            self.port,
            b"POST /up/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload,
        )
        self.count("multipart-upload", status)
        if status == 201 and "location" in headers:
            self.delete(headers["location"])

    def aborted_upload(self):
        sock = connect(self.port)
        try:
            name = f"aborted-{self.next_id()}.bin"
            sock.sendall(
                f"PUT /up/{name} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n".encode()
                + os.urandom(100 * 1024)
            )
            time.sleep(0.05)
        finally:
            sock.close()
        self.count("aborted-upload", "aborted")

    def cgi(self, kind, path):
        status, _, _ = one_request(
            self.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        self.count(kind, status)

    def cgi_post(self):
        body = os.urandom(16 * 1024)
        status, _, got = one_request(
            self.port,
            f"POST /cgi/count.sh HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body,
        )
        if status == 200 and got.strip() != str(len(body)).encode():
            status = f"wrong count {got[:20]!r}"
        self.count("cgi-post", status)

    def proxy(self):
        sock = connect(self.port)
        buf = b""
        try:
            for _ in range(5):
                sock.sendall(b"GET /app/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
                status, _, _, buf, closes = read_response(sock, buf)
                self.count("proxy", status)
                if closes:
                    break
        except Closed:
            self.count("proxy", "closed")
        finally:
            sock.close()

    def proxy_post(self):
        body = os.urandom(64 * 1024)
        status, _, _ = one_request(
            self.port,
            f"POST /app/post HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body,
        )
        self.count("proxy-post", status)

    def slowloris(self):
        """Half a head, then silence: client_header_timeout ends it (408)."""
        sock = connect(self.port, timeout=30)
        try:
            sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n")
            try:
                status, _, _, _, _ = read_response(sock)
            except Closed:
                status = "closed"
            except ConnectionResetError:
                status = "closed"
            self.count("slowloris", status)
        finally:
            sock.close()

    def tls(self):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = connect(self.tls_port)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            buf = b""
            for path in ["/index.html", "/64k.bin"] * 3:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                status, _, _, buf, _ = read_response(sock, buf)
                self.count("tls", status)

    def threads(self):
        plan = [
            ("static-keepalive", self.static_keepalive, 0.2, 2),
            ("static-close", self.static_close, 0.05, 2),
            ("put-upload", self.put_upload, 0.5, 1),
            ("multipart-upload", self.multipart_upload, 0.5, 1),
            ("aborted-upload", self.aborted_upload, 1.0, 1),
            ("cgi-fast", lambda: self.cgi("cgi-fast", "/cgi/fast.sh"), 0.3, 1),
            ("cgi-timeout", lambda: self.cgi("cgi-timeout", "/cgi/slow.sh"), 1.0, 1),
            ("cgi-crash", lambda: self.cgi("cgi-crash", "/cgi/crash.sh"), 1.0, 1),
            ("cgi-post", self.cgi_post, 0.5, 1),
            ("proxy", self.proxy, 0.2, 2),
            ("proxy-post", self.proxy_post, 0.5, 1),
            ("slowloris", self.slowloris, 0.5, 3),
        ]
        if self.tls_port:
            plan.append(("tls", self.tls, 0.3, 1))
        out = []
        for kind, step, pause, n in plan:
            for _ in range(n):
                out.append(threading.Thread(target=self.loop, args=(kind, step, pause), daemon=True))
        return out


# ---- samples and verdict -------------------------------------------------------


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid):
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
            n += 1
    return n


def temp_files(stores):
    found = []
    for store in stores:
        for name in os.listdir(store):
            if name.startswith(".webserv-") or name.endswith(".part") or name.endswith(".tmp"):
                found.append(os.path.join(store, name))
    return found


def sample(pid, stores, t0):
    return {
        "t": round(time.monotonic() - t0),
        "rss": rss_kib(pid),
        "fds": fds(pid),
        "children": children(pid),
        "temp": len(temp_files(stores)),
    }


def print_table(samples):
    print("| t (s) | VmRSS (KiB) | descriptors | children | temp files |")
    print("|---:|---:|---:|---:|---:|")
    for s in samples:
        print(f"| {s['t']} | {s['rss']} | {s['fds']} | {s['children']} | {s['temp']} |")


def load_main(pid, secs, port, tls_port, stores):
    pid, secs, port, tls_port = int(pid), float(secs), int(port), int(tls_port)
    t0 = time.monotonic()
    baseline = sample(pid, stores, t0)
    print(f"baseline: {baseline}", flush=True)
    load = Load(port, tls_port, t0 + secs)
    threads = load.threads()
    for t in threads:
        t.start()
    samples = []
    next_at = t0 + SAMPLE_EVERY
    while time.monotonic() < t0 + secs:
        time.sleep(max(0.0, min(next_at, t0 + secs) - time.monotonic()))
        if time.monotonic() >= next_at:
            samples.append(sample(pid, stores, t0))
            s = samples[-1]
            print(f"  t={s['t']}s rss={s['rss']} KiB fds={s['fds']} children={s['children']} temp={s['temp']}", flush=True)
            next_at += SAMPLE_EVERY
    # The load ends; give each client its bounded time to finish.
    for t in threads:
        t.join(timeout=40)
    # Descriptors and children return to the baseline (idle upstream
    # connections end within the upstream's 5 s; bounded wait).
    deadline = time.monotonic() + 75
    after = sample(pid, stores, t0)
    while time.monotonic() < deadline and (
        after["fds"] > baseline["fds"] or after["children"] > baseline["children"] or after["temp"]
    ):
        time.sleep(1)
        after = sample(pid, stores, t0)
    print()
    print_table(samples + [after])
    print()
    print(f"(the last row is after the load, {after['t'] - round(secs)} s after it stopped)")
    print()
    print("| kind | statuses |")
    print("|---|---|")
    unexpected = []
    for kind in sorted(load.counts):
        counts = load.counts[kind]
        print(f"| {kind} | " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)) + " |")
        for status, n in counts.items():
            if status not in ALLOWED.get(kind, set()):
                unexpected.append(f"{kind}: {status} x{n}")
    missing = [k for k in ALLOWED if k not in load.counts and (k != "tls" or tls_port)]
    print()
    failures = []
    warm = [s for s in samples if s["t"] >= secs / 4]
    if len(warm) >= 3:
        first = warm[0]["rss"]
        last_third = warm[len(warm) * 2 // 3 :]
        peak = max(s["rss"] for s in last_third)
        limit = first * 1.2 + 1024
        verdict = "ok" if peak <= limit else "FAIL"
        print(f"RSS: first after warm-up {first} KiB, last third's max {peak} KiB, limit {limit:.0f} KiB: {verdict}")
        if peak > limit:
            failures.append("RSS grows")
    else:
        print("RSS: too few samples to judge (run longer)")
    print(f"descriptors: baseline {baseline['fds']}, after {after['fds']}")
    if after["fds"] > baseline["fds"]:
        failures.append("descriptors not back to baseline")
    print(f"children: baseline {baseline['children']}, after {after['children']}")
    if after["children"] > baseline["children"]:
        failures.append("child processes left")
    left = temp_files(stores)
    print(f"temporary files left: {len(left)} {left[:5]}")
    if left:
        failures.append("temporary files left")
    if unexpected:
        print("unexpected statuses: " + "; ".join(unexpected))
        failures.append("unexpected statuses")
    if missing:
        print("kinds that never ran: " + ", ".join(missing))
        failures.append("kinds that never ran")
    try:
        os.kill(pid, 0)
        alive = one_request(port, b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")[0] == 200
    except OSError:
        alive = False
    if not alive:
        failures.append("the server no longer serves")
    print()
    if failures:
        print("verdict: FAIL (" + "; ".join(failures) + ")")
        return 1
    print("verdict: PASS")
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "upstream":
        upstream(int(argv[1]), float(argv[2]))
        return 0
    if len(argv) >= 6 and argv[0] == "load":
        return load_main(argv[1], argv[2], argv[3], argv[4], argv[5:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
