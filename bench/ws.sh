#!/usr/bin/env bash
# bench/ws.sh: WebSocket echo through the reverse proxy, webserv and nginx side by side.
#
# One echo upstream (examples/ws_bench.rs `echo`: RFC 6455 handshake, each frame back),
# behind two single-process fronts:
#   webserv: location /ws { proxy_pass http://127.0.0.1:UP; }   (upgrade needs no extra lines)
#   nginx:   location /ws { proxy_pass http://127.0.0.1:UP; proxy_http_version 1.1;
#                           proxy_set_header Upgrade $http_upgrade;
#                           proxy_set_header Connection "upgrade"; proxy_read_timeout 1h; }
# The load (examples/ws_bench.rs `client`): CONNS connections upgrade, then each sends a
# SIZE-byte text frame and waits for its echo, for DURATION seconds: messages/s and the
# round-trip p50/p99. The client straight at the upstream is measured too: the ceiling
# (if it is not far above the fronts, the client or the upstream is the limit).
#
# Prints a Markdown table (with webserv/nginx ratios) and appends it, dated, to
# bench/RESULTS.md. Environment:
#   WEBSERV_BIN  binary to test (default target/release/webserv, built if missing)
#   WS_BENCH     the examples/ws_bench binary (default: cargo build --release --example ws_bench)
#   DURATION     seconds per run (10)     CONNS  connections (64)     SIZE  bytes per message (32)
#   REPEAT       runs per front, taking turns; medians reported (3)
#   RESULTS      file to append to (bench/RESULTS.md)
set -euo pipefail

BENCH_NAME=ws
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
SIZE=${SIZE:-32}
REPEAT=${REPEAT:-3}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

ensure_installed nginx
ensure_webserv
if [ -z "${WS_BENCH:-}" ]; then
    (cd "$REPO" && cargo build --release --example ws_bench >&2) || die "building examples/ws_bench"
    WS_BENCH=$REPO/target/release/examples/ws_bench
fi

setup_workspace

# ---- servers -------------------------------------------------------------------

PORT[upstream]=$(free_port)
"$WS_BENCH" echo "${PORT[upstream]}" >"$WORK/upstream.log" 2>&1 &
PID[upstream]=$!
wait_accepting upstream

PORT[webserv]=$(free_port)
cat >"$WORK/webserv.conf" <<CONF
error_log stderr;
proxy_read_timeout 1h;
server {
    listen 127.0.0.1:${PORT[webserv]};
    access_log off;
    location /ws { proxy_pass http://127.0.0.1:${PORT[upstream]}; }
}
CONF
start_webserv_conf webserv "$WORK/webserv.conf"

PORT[nginx]=$(free_port)
NGINX_USER=1 nginx_conf "$WORK/nginx" "
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location /ws {
            proxy_pass http://127.0.0.1:${PORT[upstream]};
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \"upgrade\";
            proxy_read_timeout 1h;
        }
    }"
start_nginx_dir nginx "$WORK/nginx"
for name in upstream webserv nginx; do log "$name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"; done

# ---- measurements --------------------------------------------------------------

declare -A R=()

field() { sed -n "s/.*\\b$2=\\([0-9.]*\\).*/\\1/p" "$1"; }

bench_front() { # bench_front NAME
    local name=$1 out=$WORK/ws-$1-$RANDOM.txt
    log "ws_bench client -> $name ($CONNS connections, ${SIZE} B, ${DURATION}s)"
    timeout $((DURATION + 30)) "$WS_BENCH" client "127.0.0.1:${PORT[$name]}" /ws "$CONNS" "$DURATION" "$SIZE" \
        >"$out" 2>&1 || log "client on $name failed: $(tail -n 3 "$out")"
    local mps p50 p99 failed
    mps=$(field "$out" msgs_per_s); p50=$(field "$out" p50_us); p99=$(field "$out" p99_us)
    failed=$(field "$out" failed_conns)
    log "  -> ${mps:-?} msg/s, p50 ${p50:-?} us, p99 ${p99:-?} us, failed connections ${failed:-?}"
    R[$name:mps]+="${mps:-n/a} "
    R[$name:p50]+="$(awk -v u="${p50:-}" 'BEGIN { if (u ~ /^[0-9]+$/) printf "%.2f", u / 1000; else print "n/a" }') "
    R[$name:p99]+="$(awk -v u="${p99:-}" 'BEGIN { if (u ~ /^[0-9]+$/) printf "%.2f", u / 1000; else print "n/a" }') "
    R[$name:failed]=$((${R[$name:failed]:-0} + ${failed:-0}))
}

# The servers take turns, REPEAT times: the machine's noise hits them alike.
for _ in $(seq "$REPEAT"); do
    for name in webserv nginx upstream; do bench_front "$name"; done
done
for name in webserv nginx; do
    R[$name:rss]=$(kib_to_mib "$(rss_kib "$(serving_pid "$name")")")
done

# ---- report --------------------------------------------------------------------

for key in "${!R[@]}"; do
    case $key in *:mps | *:p50 | *:p99) R[$key]=$(median ${R[$key]}) ;; esac
done

row() { # row LABEL METRIC
    local w=${R[webserv:$2]:-n/a} n=${R[nginx:$2]:-n/a}
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$w" "$n" "$(ratio "$w" "$n")" "${R[upstream:$2]:-}"
}

table=$(
    echo "| metric | webserv front | nginx front | webserv/nginx | upstream alone |"
    echo "|---|---:|---:|---:|---:|"
    row "WebSocket echo, ${SIZE} B messages/s at $CONNS connections, median of $REPEAT (higher is better)" mps
    row "  round trip p50 ms (lower is better)" p50
    row "  round trip p99 ms (lower is better)" p99
    row "  connections that failed" failed
    row "  front RSS after the runs, MiB" rss
)
echo "$table"
append_results "WebSocket echo through the proxy (bench/ws.sh)" "$(machine_line "${DURATION}s per run")

\`DURATION=$DURATION CONNS=$CONNS SIZE=$SIZE REPEAT=$REPEAT bench/ws.sh\`: \`examples/ws_bench.rs\` client, $CONNS
connections each sending a $SIZE-byte text frame and waiting for its echo, through each front (single process), then
straight at the upstream (\`ws_bench echo\`, a thread per connection), $REPEAT times in turn (medians).
nginx has the usual \`proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \"upgrade\";\`.

$table"
