#!/usr/bin/env bash
# bench/tls.sh: webserv and nginx over HTTPS, side by side, same ECDSA P-256
# certificate, in one run.
#
#   (a) 1 KiB file, keep-alive over TLS: req/s and p99   wrk -c50 --latency
#   (b) new TLS handshakes: 1 KiB, Connection: close      wrk -c50 -H 'Connection: close'
#   (c) 1 MiB file over TLS: MiB/s                         wrk -c50
#   (d) RSS per idle TLS keep-alive connection (KiB)       bench/idle_conns.py --tls
#
# With one worker the servers run on CPU 0 and wrk on the other CPU (-t1);
# with more, everything shares the CPUs with wrk -t2 (PLACEMENT, as in run.sh;
# see `placement` in bench/lib.sh). Compare ratios, not absolute figures.
# Both servers get the same `ssl_protocols` (SSL_PROTOCOLS, default "TLSv1.2
# TLSv1.3": nginx 1.22's own default has no TLS 1.3, and a TLS 1.2 handshake is
# a different amount of work) and nginx gets webserv's order of cipher suites,
# the server's choice (else it follows OpenSSL's client to AES-256-GCM-SHA384);
# the report says what each negotiated with OpenSSL's client (wrk's):
# protocol, cipher suite, key exchange group. Both send two TLS 1.3 session
# tickets per handshake, stateless on both sides. Environment: as run.sh
# (WEBSERV_BIN, DURATION, BENCH_SERVERS, RESULTS, PLACEMENT, WORKERS:
# worker_processes on both sides, 1 by default; other than 1, (d) is left out,
# as in run.sh), IDLE_CONNS (default 1000), SSL_PROTOCOLS, REPEAT (wrk rounds,
# the servers taking turns; medians reported, 3).
set -euo pipefail

BENCH_NAME=tls
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
IDLE_CONNS=${IDLE_CONNS:-1000}
BENCH_SERVERS=${BENCH_SERVERS:-webserv nginx}
WORKERS=${WORKERS:-1}
REPEAT=${REPEAT:-3}
placement
SSL_PROTOCOLS=${SSL_PROTOCOLS:-TLSv1.2 TLSv1.3}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

ensure_installed wrk
ensure_installed openssl
if [[ " $BENCH_SERVERS " == *" nginx "* ]]; then ensure_installed nginx; fi
if [[ " $BENCH_SERVERS " == *" webserv "* ]]; then ensure_webserv; fi
ulimit -n $((IDLE_CONNS + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)

setup_workspace

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
head -c 1048576 /dev/urandom >"$WORK/www/big.bin"
chmod -R a+rX "$WORK/www"
# One ECDSA P-256 certificate for both servers.
localhost_cert

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
base_url() { echo "https://localhost:${PORT[$1]}"; }

# One round of the three wrk runs on one server; each figure is appended to a
# list, one value per round: the table shows their medians.
bench_wrk() {
    local name=$1
    run_wrk "$name" small /small.bin
    R[$name:small-rps]+="$(wrk_field "$(wrk_out "$name" small)" rps) "
    R[$name:small-p99]+="$(wrk_field "$(wrk_out "$name" small)" p99) "
    run_wrk "$name" close /small.bin -H 'Connection: close'
    R[$name:close-rps]+="$(wrk_field "$(wrk_out "$name" close)" rps) "
    run_wrk "$name" big /big.bin
    R[$name:big-mib]+="$(wrk_field "$(wrk_out "$name" big)" transfer) "
}

bench_memory() {
    log "$IDLE_CONNS idle TLS connections to $1"
    measure_idle "$1" 150 --tls --timeout 120 --hold 180
}

# negotiated NAME: what OpenSSL's client (the one wrk uses) settles on.
negotiated() {
    openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername localhost </dev/null 2>/dev/null |
        awk '/^New,/ { sub(/^New, /, ""); sub(/, Cipher is /, " "); v = $0 }
             /Temp Key:/ { sub(/^.*Temp Key: /, ""); sub(/,.*/, ""); g = $0 }
             END { printf "%s, %s", v, g }'
}

start_servers
NEGOTIATED=""
for name in $BENCH_SERVERS; do NEGOTIATED+="${NEGOTIATED:+; }$name: $(negotiated "$name")"; done
log "negotiated: $NEGOTIATED"
if [ "$WORKERS" = 1 ]; then
    for name in $BENCH_SERVERS; do bench_memory "$name"; done
fi
# The servers take turns, REPEAT times: the machine's noise hits them alike.
for _ in $(seq "$REPEAT"); do
    for name in $BENCH_SERVERS; do bench_wrk "$name"; done
done
take_medians '*-rps' '*-p99' '*-mib'
for name in $BENCH_SERVERS; do
    R[$name:errors]="${R[$name:small-errors]} / ${R[$name:close-errors]} / ${R[$name:big-errors]}"
done

table=$(
    echo "| metric (HTTPS, ECDSA P-256) | webserv | nginx | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    row "1 KiB keep-alive, req/s, median of $REPEAT (higher is better)" small-rps
    row "1 KiB keep-alive, p99 latency ms, median of $REPEAT (lower is better)" small-p99
    row "new handshakes: 1 KiB Connection: close, req/s, median of $REPEAT (higher is better)" close-rps
    row "1 MiB keep-alive, MiB/s, median of $REPEAT (higher is better)" big-mib
    if [ "$WORKERS" = 1 ]; then
        row "idle TLS connections held" idle-ok
        row "RSS per idle TLS connection, KiB (lower is better)" kib-per-conn
    fi
    row "wrk errors and non-2xx, all rounds (keep-alive / close / 1 MiB)" errors
)
echo "$table"
append_results "TLS, worker_processes $WORKERS (bench/tls.sh)" "$(machine_line "wrk ${DURATION}s per run, $IDLE_CONNS idle TLS connections, $PLACEMENT_NOTE")
Negotiated (OpenSSL $(openssl version | awk '{ print $2 }') client): $NEGOTIATED.

\`WORKERS=$WORKERS PLACEMENT=$PLACEMENT REPEAT=$REPEAT SSL_PROTOCOLS=\"$SSL_PROTOCOLS\" DURATION=$DURATION IDLE_CONNS=$IDLE_CONNS bench/tls.sh\`

$table

Every round, in order:

\`\`\`
$(print_runs small-rps small-p99 close-rps big-mib)
\`\`\`"
