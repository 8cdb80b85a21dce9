#!/usr/bin/env bash
# bench/tls.sh: webserv and nginx over HTTPS, side by side, same ECDSA P-256
# certificate, in one run.
#
#   (a) 1 KiB file, keep-alive over TLS: req/s and p99   wrk -t2 -c50 --latency
#   (b) new TLS handshakes: 1 KiB, Connection: close      wrk -t2 -c50 -H 'Connection: close'
#   (c) 1 MiB file over TLS: MiB/s                         wrk -t2 -c50
#   (d) RSS per idle TLS keep-alive connection (KiB)       bench/idle_conns.py --tls
#
# wrk shares the 2 cores with the server under test (and each server runs one
# worker), so compare ratios, not absolute figures. Both servers get the same
# `ssl_protocols` (SSL_PROTOCOLS, default "TLSv1.2 TLSv1.3": nginx 1.22's own
# default has no TLS 1.3, and a TLS 1.2 handshake is a different amount of
# work) and nginx gets webserv's order of cipher suites, the server's choice
# (else it follows OpenSSL's client to AES-256-GCM-SHA384); the report says
# what each negotiated with OpenSSL's client (wrk's): protocol, cipher
# suite, key exchange group. Both send OpenSSL's and rustls's default two
# TLS 1.3 session tickets per handshake (nginx: stateless; webserv:
# rustls's in-memory session cache). Environment: as run.sh
# (WEBSERV_BIN, DURATION, BENCH_SERVERS, RESULTS, WORKERS: worker_processes
# on both sides, 1 by default; other than 1, (d) is left out, as in run.sh),
# IDLE_CONNS (default 1000), SSL_PROTOCOLS.
set -euo pipefail

BENCH_NAME=tls
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
IDLE_CONNS=${IDLE_CONNS:-1000}
BENCH_SERVERS=${BENCH_SERVERS:-webserv nginx}
WORKERS=${WORKERS:-1}
SSL_PROTOCOLS=${SSL_PROTOCOLS:-TLSv1.2 TLSv1.3}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

ensure_installed wrk
ensure_installed openssl
if [[ " $BENCH_SERVERS " == *" nginx "* ]]; then ensure_installed nginx; fi
if [[ " $BENCH_SERVERS " == *" webserv "* ]]; then ensure_webserv; fi
ulimit -n $((IDLE_CONNS + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)

setup_workspace
IDLE_PID=""
stop_idle() { [ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true; }
CLEANUP_HOOKS+=(stop_idle)

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
head -c 1048576 /dev/urandom >"$WORK/www/big.bin"
chmod -R a+rX "$WORK/www"
# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod a+r "$WORK/key.pem"

start_webserv() {
    PORT[webserv]=$(free_port)
    cat >"$WORK/webserv.conf" <<CONF
worker_processes $WORKERS;
max_connections $((FDS - 64));
ssl_protocols $SSL_PROTOCOLS;
server {
    listen 127.0.0.1:${PORT[webserv]} ssl;
    server_name localhost;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    root $WORK/www;
}
CONF
    start_webserv_conf webserv "$WORK/webserv.conf"
}

start_nginx() {
    PORT[nginx]=$(free_port)
    nginx_conf "$WORK/nginx" "
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    ssl_protocols $SSL_PROTOCOLS;
    # webserv's order of suites (src/config/tls.rs), the server's choice.
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305;
    server {
        listen 127.0.0.1:${PORT[nginx]} ssl;
        server_name localhost;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        root $WORK/www;
    }"
    start_nginx_dir nginx "$WORK/nginx"
}

declare -A R=()
wrk_out() { echo "$WORK/wrk-$1-$2.txt"; }
run_wrk() { # run_wrk NAME TAG PATH [wrk args...]
    local name=$1 tag=$2 path=$3 out
    shift 3
    out=$(wrk_out "$name" "$tag")
    log "wrk $tag on $name"
    timeout $((DURATION + 30)) wrk -t2 -c50 -d"${DURATION}s" --latency "$@" \
        "https://localhost:${PORT[$name]}$path" >"$out" 2>&1 \
        || log "wrk $tag on $name failed: $(tail -n 3 "$out")"
    R[$name:$tag-errors]=$(wrk_errors "$out")
}

bench_wrk() {
    local name=$1
    run_wrk "$name" small /small.bin
    R[$name:small-rps]=$(wrk_field "$(wrk_out "$name" small)" rps)
    R[$name:small-p99]=$(wrk_field "$(wrk_out "$name" small)" p99)
    run_wrk "$name" close /small.bin -H 'Connection: close'
    R[$name:close-rps]=$(wrk_field "$(wrk_out "$name" close)" rps)
    run_wrk "$name" big /big.bin
    R[$name:big-mib]=$(wrk_field "$(wrk_out "$name" big)" transfer)
    R[$name:errors]="${R[$name:small-errors]} / ${R[$name:close-errors]} / ${R[$name:big-errors]}"
}

bench_memory() {
    local name=$1 pid before after ready="" deadline
    pid=$(serving_pid "$name")
    before=$(rss_kib "$pid")
    log "$IDLE_CONNS idle TLS connections to $name"
    python3 "$HERE/idle_conns.py" --tls --port "${PORT[$name]}" --count "$IDLE_CONNS" \
        --timeout 120 --hold 180 >"$WORK/idle-$name.txt" 2>&1 &
    IDLE_PID=$!
    deadline=$((SECONDS + 150))
    while [ -z "$ready" ] && [ "$SECONDS" -lt "$deadline" ] && kill -0 "$IDLE_PID" 2>/dev/null; do
        ready=$(awk '$1 == "ready" { print $2 }' "$WORK/idle-$name.txt" 2>/dev/null || true)
        sleep 0.1
    done
    after=$(rss_kib "$pid")
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=""
    R[$name:idle-ok]=${ready:-0}
    if [ "${ready:-0}" -gt 0 ]; then
        R[$name:kib-per-conn]=$(awk -v a="$after" -v b="$before" -v n="$ready" 'BEGIN { printf "%.2f", (a - b) / n }')
    else
        R[$name:kib-per-conn]=n/a
    fi
}

# negotiated NAME: what OpenSSL's client (the one wrk uses) settles on.
negotiated() {
    openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername localhost </dev/null 2>/dev/null |
        awk '/^New,/ { sub(/^New, /, ""); sub(/, Cipher is /, " "); v = $0 }
             /Temp Key:/ { sub(/^.*Temp Key: /, ""); sub(/,.*/, ""); g = $0 }
             END { printf "%s, %s", v, g }'
}

row() {
    local w=${R[webserv:$2]:-n/a} n=${R[nginx:$2]:-n/a}
    printf '| %s | %s | %s | %s |\n' "$1" "$w" "$n" "$(ratio "$w" "$n")"
}

for name in $BENCH_SERVERS; do
    case $name in
        webserv) start_webserv ;;
        nginx) start_nginx ;;
        *) die "unknown server in BENCH_SERVERS: $name" ;;
    esac
    log "$name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"
done
NEGOTIATED=""
for name in $BENCH_SERVERS; do NEGOTIATED+="${NEGOTIATED:+; }$name: $(negotiated "$name")"; done
log "negotiated: $NEGOTIATED"
if [ "$WORKERS" = 1 ]; then
    for name in $BENCH_SERVERS; do bench_memory "$name"; done
fi
for name in $BENCH_SERVERS; do bench_wrk "$name"; done

table=$(
    echo "| metric (HTTPS, ECDSA P-256) | webserv | nginx | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    row "1 KiB keep-alive, req/s (higher is better)" small-rps
    row "1 KiB keep-alive, p99 latency ms (lower is better)" small-p99
    row "new handshakes: 1 KiB Connection: close, req/s (higher is better)" close-rps
    row "1 MiB keep-alive, MiB/s (higher is better)" big-mib
    if [ "$WORKERS" = 1 ]; then
        row "idle TLS connections held" idle-ok
        row "RSS per idle TLS connection, KiB (lower is better)" kib-per-conn
    fi
    row "wrk errors and non-2xx (keep-alive / close / 1 MiB)" errors
)
echo "$table"
append_results "TLS, worker_processes $WORKERS (bench/tls.sh)" "$(machine_line "wrk ${DURATION}s per run, $IDLE_CONNS idle TLS connections")
Negotiated (OpenSSL $(openssl version | awk '{ print $2 }') client): $NEGOTIATED.

\`WORKERS=$WORKERS SSL_PROTOCOLS=\"$SSL_PROTOCOLS\" DURATION=$DURATION IDLE_CONNS=$IDLE_CONNS bench/tls.sh\`

$table"
