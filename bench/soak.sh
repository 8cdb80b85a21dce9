#!/usr/bin/env bash
# bench/soak.sh (`make soak`): webserv under a moderate mixed load for
# SOAK_SECS seconds (default 1800), watched for leaks.
#
# The server (release binary, one process) serves static files, uploads
# (PUT and multipart, and uploads the client abandons mid-body), CGI (a fast
# script, a counting one fed a POST body, one that outlives cgi_timeout, one
# that crashes), a proxy location to an upstream that goes down and up every
# FLAP_SECS (30) seconds, slow clients that never finish their head, and a
# TLS listener when a certificate can be made (`cargo run --release
# --example selfsigned`). bench/soak.py drives the load, samples VmRSS,
# descriptors, children and temporary upload files every 10 s, prints them
# as a table with the statuses each kind of client got, and judges:
#   - RSS flat after warm-up (the last third's max <= 1.2 x the first sample
#     after the first quarter, + 1 MiB);
#   - descriptors and children back to the baseline once the load stops;
#   - no temporary upload file left; no status a kind of client may not get.
# Exit status 0 on pass, 1 on fail. Environment:
#   SOAK_SECS    duration (1800)          FLAP_SECS   upstream period (30)
#   SOAK_TLS     0 leaves TLS out (1)
#   WEBSERV_BIN  binary (target/release/webserv, built if missing)
set -euo pipefail

BENCH_NAME=soak
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SOAK_SECS=${SOAK_SECS:-1800}
FLAP_SECS=${FLAP_SECS:-30}
SOAK_TLS=${SOAK_TLS:-1}

ensure_webserv
setup_workspace

mkdir -p "$WORK/www/cgi" "$WORK/store" "$WORK/tls"
echo '<!doctype html><title>soak</title>' >"$WORK/www/index.html"
head -c 65536 /dev/urandom >"$WORK/www/64k.bin"
cat >"$WORK/www/cgi/fast.sh" <<'SH'
printf 'Content-Type: text/plain\r\n\r\nfast\n'
SH
cat >"$WORK/www/cgi/count.sh" <<'SH'
n=$(wc -c)
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$n"
SH
cat >"$WORK/www/cgi/slow.sh" <<'SH'
sleep 30
SH
cat >"$WORK/www/cgi/crash.sh" <<'SH'
kill -SEGV $$
SH

PORT[webserv]=$(free_port)
UPSTREAM_PORT=$(free_port)
TLS_PORT=0
TLS_BLOCK=""
# The example's binary when built, else cargo builds it.
make_cert() {
    local built="$REPO/target/release/examples/selfsigned"
    if [ -x "$built" ]; then "$built" "$WORK/tls"; else
        (cd "$REPO" && cargo run -q --release --example selfsigned -- "$WORK/tls")
    fi
}
if [ "$SOAK_TLS" = 1 ] && make_cert >"$WORK/cert.log" 2>&1; then
    TLS_PORT=$(free_port)
    TLS_BLOCK="
server {
    listen 127.0.0.1:$TLS_PORT ssl;
    server_name localhost;
    ssl_certificate $WORK/tls/localhost.crt;
    ssl_certificate_key $WORK/tls/localhost.key;
    root $WORK/www;
    access_log off;
}"
elif [ "$SOAK_TLS" = 1 ]; then
    log "no certificate ($(tail -n 1 "$WORK/cert.log")): TLS left out"
fi

cat >"$WORK/soak.conf" <<CONF
error_log $WORK/error.log;
client_header_timeout 5s;
client_body_timeout 10s;
server {
    listen 127.0.0.1:${PORT[webserv]};
    server_name localhost;
    root $WORK/www;
    access_log off;
    client_max_body_size 2m;
    location /up/ {
        methods GET POST PUT DELETE;
        upload_store $WORK/store;
    }
    location /cgi/ {
        methods GET POST;
        cgi .sh /bin/sh;
        cgi_timeout 2s;
    }
    location /app/ {
        methods GET HEAD POST;
        proxy_pass http://127.0.0.1:$UPSTREAM_PORT;
        proxy_connect_timeout 1s;
        proxy_read_timeout 3s;
    }
}
$TLS_BLOCK
CONF

python3 "$HERE/soak.py" upstream "$UPSTREAM_PORT" "$FLAP_SECS" >"$WORK/upstream.log" 2>&1 &
PID[upstream]=$!
start_webserv_conf webserv "$WORK/soak.conf"
log "webserv pid ${PID[webserv]}, port ${PORT[webserv]}, TLS port $TLS_PORT, upstream $UPSTREAM_PORT (flaps every ${FLAP_SECS}s), ${SOAK_SECS}s of load"

status=0
python3 "$HERE/soak.py" load "${PID[webserv]}" "$SOAK_SECS" "${PORT[webserv]}" "$TLS_PORT" "$WORK/store" || status=$?
if [ -s "$WORK/error.log" ]; then
    log "error log, kinds of lines:"
    sed -E 's/^[0-9\/: ]+//; s/[0-9]+/N/g' "$WORK/error.log" | sort | uniq -c | sort -rn | head -n 15 >&2
fi
exit "$status"
