#!/usr/bin/env bash
# bench/proxy.sh: reverse proxy, webserv and nginx side by side, in one run.
#
# One upstream, an nginx (worker_processes 1) serving a 1 KiB file, behind two fronts:
#   webserv: location / { proxy_pass http://127.0.0.1:UP; }
#   nginx:   upstream u { server 127.0.0.1:UP; keepalive 32; }
#            location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }
# Both fronts run one process (worker_processes 1). For each:
#   wrk -t2 -c50 -d10s --latency http://FRONT/small.bin: req/s and p99
# and the upstream connections it opened, counted from the upstream's access log
# ($connection): keep-alive to the upstream means a handful, not one per request.
# The upstream alone is measured too, as the ceiling. A second, shorter run with
# fewer clients (16) than idle connections kept (32) checks that every upstream
# connection is reused (at 50 clients both fronts must close some: their idle
# pools hold 32).
#
# Prints a Markdown table (with webserv/nginx ratios) and appends it, dated, to
# bench/RESULTS.md. Environment:
#   WEBSERV_BIN     binary to test (default target/release/webserv, built if missing)
#   DURATION        seconds per wrk run (10)     CONNS  wrk connections (50)
#   REPEAT          runs at CONNS per server, taking turns; medians reported (3)
#   REUSE_CONNS, REUSE_DURATION  the second, reuse-checking run (16 connections, 5 s)
#   RESULTS         file to append to (bench/RESULTS.md)
set -euo pipefail

BENCH_NAME=proxy
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
REPEAT=${REPEAT:-3}
REUSE_CONNS=${REUSE_CONNS:-16}
REUSE_DURATION=${REUSE_DURATION:-5}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

ensure_installed wrk
ensure_installed curl
ensure_installed nginx
ensure_webserv

setup_workspace

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/small.bin"
chmod -R a+rX "$WORK/www"

# ---- servers -------------------------------------------------------------------

# The upstream (`nginx_upstream`), with a buffered access log of connection
# serial numbers.
PORT[upstream]=$(free_port)
nginx_upstream "$WORK/upstream" "${PORT[upstream]}" \
    "log_format conn '\$connection \$connection_requests';" \
    "access_log $WORK/upstream/access.log conn buffer=256k flush=1s;"
start_nginx_dir upstream "$WORK/upstream"

PORT[webserv]=$(free_port)
proxy_front_conf "$WORK/webserv.conf" "${PORT[webserv]}" "${PORT[upstream]}"
start_webserv_conf webserv "$WORK/webserv.conf"

PORT[nginx]=$(free_port)
nginx_proxy_front "$WORK/nginx" "${PORT[nginx]}" "${PORT[upstream]}"
start_nginx_dir nginx "$WORK/nginx"
for name in upstream webserv nginx; do log "$name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"; done

# ---- measurements --------------------------------------------------------------

declare -A R=()
LOG=$WORK/upstream/access.log

log_lines() { sleep 2; [ -f "$LOG" ] && wc -l <"$LOG" || echo 0; } # after a flush

bench_front() { # bench_front NAME CONNS SECONDS TAG
    local name=$1 conns=$2 secs=$3 tag=$4 first last url="http://127.0.0.1:${PORT[$1]}/small.bin"
    local out=$WORK/wrk-$name-$tag.txt
    # The same bytes as the upstream's file, through this front.
    if ! timeout 10 curl -sS "$url" | cmp -s - "$WORK/www/small.bin"; then
        log "$name does not relay /small.bin intact"
        R[$name:intact]=no
    else
        R[$name:intact]=yes
    fi
    first=$(log_lines)
    log "wrk -c$conns on $name"
    timeout $((secs + 30)) wrk -t2 -c"$conns" -d"${secs}s" --latency "$url" >"$out" 2>&1 ||
        log "wrk on $name failed: $(tail -n 3 "$out")"
    local rps p99 errors conns reqs
    rps=$(wrk_field "$out" rps)
    p99=$(wrk_field "$out" p99)
    errors=$(wrk_errors "$out")
    last=$(log_lines)
    # Upstream connections this run used, and requests each carried.
    conns=$(sed -n "$((first + 1)),${last}p" "$LOG" | awk '{ print $1 }' | sort -u | wc -l)
    reqs=$((last - first))
    log "  -> $rps req/s, p99 $p99 ms, $reqs upstream requests on $conns connections"
    # Lists, one value per run: the table shows their medians (errors: the sum).
    R[$name:$tag-rps]+="$rps "
    R[$name:$tag-p99]+="$p99 "
    R[$name:$tag-errors]=$((${R[$name:$tag-errors]:-0} + errors))
    R[$name:$tag-upconns]+="$conns "
    R[$name:$tag-per-conn]+="$(awk -v r="$reqs" -v c="$conns" 'BEGIN { if (c > 0) printf "%.0f", r / c; else print "n/a" }') "
}

# The servers take turns, REPEAT times: the machine's noise hits them alike.
for _ in $(seq "$REPEAT"); do
    for name in webserv nginx upstream; do bench_front "$name" "$CONNS" "$DURATION" main; done
done
# Fewer clients than the 32 idle connections both fronts keep: every upstream
# connection should then be reused for the whole run.
# Taking turns REPEAT times too: one run of a few seconds is all noise on a
# shared machine.
for _ in $(seq "$REPEAT"); do
    for name in webserv nginx; do bench_front "$name" "$REUSE_CONNS" "$REUSE_DURATION" reuse; done
done

# ---- report --------------------------------------------------------------------

# Medians of the runs (a single value stays as it is).
for key in "${!R[@]}"; do
    case $key in *-rps | *-p99 | *-upconns | *-per-conn) R[$key]=$(median ${R[$key]}) ;; esac
done

row() { # row LABEL METRIC
    local w=${R[webserv:$2]:-n/a} n=${R[nginx:$2]:-n/a}
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$w" "$n" "$(ratio "$w" "$n")" "${R[upstream:$2]:-}"
}

table=$(
    echo "| metric | webserv front | nginx front | webserv/nginx | upstream alone |"
    echo "|---|---:|---:|---:|---:|"
    row "1 KiB via proxy, req/s at $CONNS connections, median of $REPEAT (higher is better)" main-rps
    row "  p99 latency ms (lower is better)" main-p99
    row "  wrk errors and non-2xx" main-errors
    row "  upstream connections opened (lower is better)" main-upconns
    row "  requests per upstream connection" main-per-conn
    row "1 KiB via proxy, req/s at $REUSE_CONNS connections (< keepalive 32), median of $REPEAT" reuse-rps
    row "  p99 latency ms (lower is better)" reuse-p99
    row "  wrk errors and non-2xx" reuse-errors
    row "  upstream connections opened (lower is better)" reuse-upconns
    row "  requests per upstream connection" reuse-per-conn
    row "body relayed intact" intact
)
echo "$table"
append_results "reverse proxy (bench/proxy.sh)" "$(machine_line "wrk ${DURATION}s per run")

\`DURATION=$DURATION CONNS=$CONNS REPEAT=$REPEAT bench/proxy.sh\`: \`wrk -t2 -c$CONNS -d${DURATION}s --latency\` on
/small.bin (1 KiB) through each front, then on the upstream itself, $REPEAT times in turn (medians); all three single-process;
then \`wrk -t2 -c$REUSE_CONNS -d${REUSE_DURATION}s\` through each front, $REPEAT times in turn (medians).
Upstream connections: distinct \`\$connection\` values in the upstream's access log.

$table"
