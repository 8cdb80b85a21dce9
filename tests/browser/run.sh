#!/usr/bin/env bash
# Browser walk-through of the demo site: installs Chromium (apt) and playwright-core
# (npm) when missing, starts webserv on free ports with a temporary copy of
# conf.d/default.conf and www/, runs walkthrough.mjs, stops the server.
#
#   tests/browser/run.sh            # or: make browser-test
#   WEBSERV_BIN=path/to/webserv tests/browser/run.sh
#
# Screenshots land in tests/browser/screenshots/ (gitignored); the server log in
# tests/browser/screenshots/server.log. Not part of `make test`: CI has no browser.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${WEBSERV_BIN:-$ROOT/target/release/webserv}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

if ! command -v chromium >/dev/null 2>&1; then
  echo "run.sh: installing chromium with apt-get" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
# Debian's /usr/bin/chromium is a wrapper script; prefer it (it sets the flags the
# distribution needs), playwright launches whatever path it is given.

if [ ! -d "$HERE/node_modules/playwright-core" ]; then
  echo "run.sh: npm install playwright-core (no browser download)" >&2
  (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent)
fi

if [ ! -x "$BIN" ]; then
  echo "run.sh: building $BIN" >&2
  (cd "$ROOT" && cargo build --release)
fi

# Two free TCP ports on 127.0.0.1 (the kernel picks them; a tiny race is acceptable).
read -r PORT1 PORT2 < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

# A private copy of the site: uploads and deletions never touch the worktree.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/webserv-browser.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

cp -a "$ROOT/www" "$TMP/www"
find "$TMP/www/uploads" -mindepth 1 ! -name .gitkeep ! -name .gitignore -delete
mkdir -p "$TMP/conf.d"
sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$PORT1#g" \
    -e "s#127\.0\.0\.1:8081#127.0.0.1:$PORT2#g" \
    -e "s#\.\./www#$TMP/www#g" \
    "$ROOT/conf.d/default.conf" > "$TMP/conf.d/default.conf"
"$BIN" check "$TMP/conf.d/default.conf" >/dev/null

mkdir -p "$HERE/screenshots"
LOG="$HERE/screenshots/server.log"
"$BIN" "$TMP/conf.d/default.conf" >"$LOG" 2>&1 &
SERVER_PID=$!

for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT1") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT2") 2>/dev/null; then
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "run.sh: webserv exited; log:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
echo "run.sh: webserv (pid $SERVER_PID) on 127.0.0.1:$PORT1 and :$PORT2, site copy in $TMP/www" >&2

BASE_URL="http://127.0.0.1:$PORT1" \
SECOND_URL="http://127.0.0.1:$PORT2" \
UPLOAD_DIR="$TMP/www/uploads" \
SERVER_LOG="$LOG" \
CHROMIUM="$CHROMIUM" \
node "$HERE/walkthrough.mjs"
