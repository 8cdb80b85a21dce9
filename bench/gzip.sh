#!/usr/bin/env bash
# bench/gzip.sh: gzip on the fly, webserv against nginx, same file, one run.
#
#   a 100 KiB HTML page, `gzip on` on both sides (level 1, nginx's default),
#   wrk -t2 -c50 with Accept-Encoding: gzip: req/s and p99 latency; and the
#   same page uncompressed (no Accept-Encoding) for scale.
#
# Prints a Markdown table and appends it, dated, to bench/RESULTS.md.
# Environment: WEBSERV_BIN, DURATION (10), RESULTS, as bench/run.sh.
set -euo pipefail

BENCH_NAME=gzip
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-10}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

ensure_installed wrk
ensure_installed nginx
ensure_webserv
setup_workspace

mkdir -p "$WORK/www"
python3 - "$WORK/www/page.html" <<'PY'
import sys
rows, size, i = [], 0, 0
while size < 100 * 1024:
    row = f'<tr class="r{i % 7}"><td><a href="/item/{i}.html">Item {i}</a></td><td>{(i * 2654435761) % 100000}</td></tr>\n'
    rows.append(row); size += len(row); i += 1
open(sys.argv[1], "w").write(("<!doctype html><table>\n" + "".join(rows))[:100 * 1024])
PY
chmod -R a+rX "$WORK/www"

PORT[webserv]=$(free_port)
cat >"$WORK/webserv.conf" <<CONF
error_log stderr;
server {
    listen 127.0.0.1:${PORT[webserv]};
    root $WORK/www;
    gzip on;
}
CONF
start_webserv_conf webserv "$WORK/webserv.conf"

PORT[nginx]=$(free_port)
nginx_conf "$WORK/nginx" "
    sendfile on;
    keepalive_requests 1000000;
    types { text/html html; }
    gzip on;
    gzip_comp_level 1;
    server {
        listen 127.0.0.1:${PORT[nginx]};
        root $WORK/www;
    }"
start_nginx_dir nginx "$WORK/nginx"

declare -A R=()
for name in webserv nginx; do
    for tag in gzip plain; do
        out="$WORK/wrk-$name-$tag.txt"
        args=()
        [ "$tag" = gzip ] && args=(-H 'Accept-Encoding: gzip')
        log "wrk $tag on $name"
        timeout $((DURATION + 30)) wrk -t2 -c50 -d"${DURATION}s" --latency "${args[@]}" \
            "http://127.0.0.1:${PORT[$name]}/page.html" >"$out" 2>&1 || log "wrk failed: $(tail -n 3 "$out")"
        R[$name:$tag-rps]=$(wrk_field "$out" rps)
        R[$name:$tag-p99]=$(wrk_field "$out" p99)
        R[$name:$tag-errors]=$(wrk_errors "$out")
    done
    R[$name:size]=$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:${PORT[$name]}/page.html" | wc -c)
done

table=$(
    echo "| metric | webserv | nginx | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    row "100 KiB HTML, gzip on the fly, req/s (higher is better)" gzip-rps
    row "  p99 latency ms (lower is better)" gzip-p99
    row "  compressed size, bytes" size
    row "100 KiB HTML uncompressed, req/s (for scale)" plain-rps
    printf '| wrk errors and non-2xx (gzip / plain) | %s / %s | %s / %s | n/a |\n' \
        "${R[webserv:gzip-errors]}" "${R[webserv:plain-errors]}" "${R[nginx:gzip-errors]}" "${R[nginx:plain-errors]}"
)
echo "$table"
append_results "gzip on the fly (bench/gzip.sh)" "$(machine_line "wrk ${DURATION}s per run")

\`DURATION=$DURATION bench/gzip.sh\`

$table"
