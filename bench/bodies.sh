#!/usr/bin/env bash
# bench/bodies.sh: 1 GiB uploads, webserv and nginx side by side, in one run.
#
#   (a) PUT of 1 GiB: throughput (MiB/s, curl's speed_upload) and the server's
#       peak RSS during the upload (VmHWM, reset before each upload)
#         webserv: location /up/ { methods PUT POST; upload_store DIR; client_max_body_size 0; }
#         nginx:   location /up/ { dav_methods PUT; create_full_put_path on; client_max_body_size 0; }
#   (b) multipart POST of 1 GiB (curl -F), webserv only: nginx has no multipart upload
#
# Each upload runs UPLOAD_REPEAT times (3), the servers taking turns; the table
# shows the median throughput and the highest peak RSS. Every stored file is
# checked (status and size on disk) and removed. The file to upload is a 1 MiB
# random block repeated (generated once, in the temporary directory under /tmp;
# the stores are there too). Environment:
#   WEBSERV_BIN     binary to test (default target/release/webserv, built if missing)
#   UPLOAD_MIB      upload size in MiB (1024)      UPLOAD_REPEAT  runs per upload (3)
#   UPLOAD_TIMEOUT  seconds allowed per upload (600)
#   RESULTS         file to append to (bench/RESULTS.md)
set -euo pipefail

BENCH_NAME=bodies
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
UPLOAD_MIB=${UPLOAD_MIB:-1024}
UPLOAD_REPEAT=${UPLOAD_REPEAT:-3}
UPLOAD_TIMEOUT=${UPLOAD_TIMEOUT:-600}
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
SIZE=$((UPLOAD_MIB * 1048576))

ensure_installed curl
ensure_installed nginx
ensure_webserv

setup_workspace
CLEANUP_HOOKS+=(stop_sampler)

free_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
[ "$free_kib" -gt $((UPLOAD_MIB * 1024 * 3)) ] ||
    die "need $((UPLOAD_MIB * 3)) MiB free under $(dirname "$WORK") (the file, one upload, slack)"

log "generating the $UPLOAD_MIB MiB upload file"
head -c 1048576 /dev/urandom >"$WORK/block"
for _ in $(seq "$UPLOAD_MIB"); do cat "$WORK/block"; done >"$WORK/upload.bin"
rm -f "$WORK/block"
[ "$(stat -c %s "$WORK/upload.bin")" -eq "$SIZE" ] || die "upload file has the wrong size"

# ---- servers -------------------------------------------------------------------

PORT[webserv]=$(free_port)
mkdir -p "$WORK/ws-store"
cat >"$WORK/webserv.conf" <<CONF
error_log stderr;
server {
    listen 127.0.0.1:${PORT[webserv]};
    root $WORK/www;
    access_log off;
    location /up/ {
        methods PUT POST;
        upload_store $WORK/ws-store;
        client_max_body_size 0;
    }
}
CONF
mkdir -p "$WORK/www"
start_webserv_conf webserv "$WORK/webserv.conf"

# dav writes the body to a file under client_body_temp_path (same filesystem)
# and renames it into place: client_body_in_file_only is implied for PUT.
PORT[nginx]=$(free_port)
mkdir -p "$WORK/ng-root"
NGINX_USER=1 nginx_conf "$WORK/nginx" "
    server {
        listen 127.0.0.1:${PORT[nginx]};
        root $WORK/ng-root;
        location /up/ {
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
            client_body_temp_path $WORK/nginx/tmp/body;
        }
    }"
start_nginx_dir nginx "$WORK/nginx"
for name in webserv nginx; do log "$name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"; done

# ---- measurements --------------------------------------------------------------

declare -A R=() # R[name:kind] = space-separated values, one per run
ERRORS=()

# upload NAME KIND RUN: one upload, its MiB/s and the peak RSS (KiB) appended to R
upload() {
    local name=$1 kind=$2 run=$3 pid url out code speed stored hwm base
    pid=$(serving_pid "$name")
    out=$WORK/curl-$name-$kind-$run
    # Start each upload from a clean page cache state: no earlier upload's
    # dirty pages being written back during this one.
    sync
    reset_hwm "$pid" || log "cannot reset VmHWM of $pid: the peak covers the whole run"
    base=$(rss_kib "$pid")
    sample_rss "$pid" "$out.rss"
    log "$kind $UPLOAD_MIB MiB to $name (run $run)"
    case $kind in
        put)
            url="http://127.0.0.1:${PORT[$name]}/up/put-$run.bin"
            timeout "$UPLOAD_TIMEOUT" curl -sS -o "$out.body" -D "$out.head" \
                -w '%{http_code} %{speed_upload}\n' -T "$WORK/upload.bin" "$url" >"$out" 2>"$out.err" || true
            ;;
        post)
            url="http://127.0.0.1:${PORT[$name]}/up/"
            timeout "$UPLOAD_TIMEOUT" curl -sS -o "$out.body" -D "$out.head" \
                -w '%{http_code} %{speed_upload}\n' \
                -F "file=@$WORK/upload.bin;filename=post-$run.bin;type=application/octet-stream" \
                "$url" >"$out" 2>"$out.err" || true
            ;;
    esac
    stop_sampler
    hwm=$(hwm_kib "$pid")
    # Per-CPU RSS counters make VmHWM and VmRSS approximate: keep the highest seen.
    for v in $(cat "$out.rss" 2>/dev/null); do [ "$v" -gt "$hwm" ] && hwm=$v; done
    read -r code speed <"$out" || { code=000; speed=0; }
    case $name:$kind in
        webserv:put) stored=$WORK/ws-store/put-$run.bin ;;
        webserv:post) stored=$(find "$WORK/ws-store" -maxdepth 1 -name "post-$run*" | head -n 1) ;;
        nginx:put) stored=$WORK/ng-root/up/put-$run.bin ;;
    esac
    if [[ $code != 201 && $code != 204 ]] || [ ! -f "$stored" ] || [ "$(stat -c %s "$stored")" -ne "$SIZE" ]; then
        ERRORS+=("$name $kind run $run: HTTP $code, stored $( [ -f "$stored" ] && stat -c %s "$stored" || echo none) bytes; $(head -c 300 "$out.err")")
        log "FAILED: ${ERRORS[-1]}"
        speed=n/a
    else
        speed=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1048576 }')
    fi
    rm -f "$WORK"/ws-store/* "$WORK"/ng-root/up/* 2>/dev/null || true
    log "  -> HTTP $code, $speed MiB/s, RSS $base KiB before, peak $hwm KiB"
    R[$name:$kind-mibs]+="$speed "
    R[$name:$kind-hwm]+="$hwm "
}

for run in $(seq "$UPLOAD_REPEAT"); do
    upload nginx put "$run"
    upload webserv put "$run"
    upload webserv post "$run"
done

max_of() { printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n | tail -n 1; }

put_w=$(median ${R[webserv:put-mibs]})
put_n=$(median ${R[nginx:put-mibs]})
post_w=$(median ${R[webserv:post-mibs]})
hwm_put_w=$(max_of ${R[webserv:put-hwm]})
hwm_put_n=$(max_of ${R[nginx:put-hwm]})
hwm_post_w=$(max_of ${R[webserv:post-hwm]})

table=$(
    echo "| metric | webserv | nginx | webserv/nginx |"
    echo "|---|---:|---:|---:|"
    printf '| PUT %s MiB, MiB/s, median of %s (higher is better) | %s | %s | %s |\n' \
        "$UPLOAD_MIB" "$UPLOAD_REPEAT" "$put_w" "$put_n" "$(ratio "$put_w" "$put_n")"
    printf '| PUT, peak RSS MiB (VmHWM, highest run; goal < 32) | %s | %s | %s |\n' \
        "$(kib_to_mib "$hwm_put_w")" "$(kib_to_mib "$hwm_put_n")" "$(ratio "$hwm_put_w" "$hwm_put_n")"
    printf '| multipart POST %s MiB, MiB/s, median of %s | %s | (no multipart) | %s |\n' \
        "$UPLOAD_MIB" "$UPLOAD_REPEAT" "$post_w" "$(ratio "$post_w" "$put_n") of nginx PUT"
    printf '| multipart POST, peak RSS MiB (VmHWM, highest run; goal < 32) | %s | | |\n' \
        "$(kib_to_mib "$hwm_post_w")"
    printf '| runs, MiB/s (PUT / POST) | %s/ %s| %s| |\n' \
        "${R[webserv:put-mibs]}" "${R[webserv:post-mibs]}" "${R[nginx:put-mibs]}"
    printf '| failed uploads | %s | | |\n' "${#ERRORS[@]}"
)
echo "$table"
for e in "${ERRORS[@]}"; do echo "error: $e"; done

body="$(machine_line "$UPLOAD_MIB MiB uploads, $UPLOAD_REPEAT runs each")

\`UPLOAD_MIB=$UPLOAD_MIB UPLOAD_REPEAT=$UPLOAD_REPEAT bench/bodies.sh\`: \`curl -T FILE /up/put-N.bin\`
(both servers), \`curl -F file=@FILE /up/\` (webserv); the servers take turns, \`sync\` before each upload.

$table"
for e in "${ERRORS[@]}"; do body+="
- error: $e"; done
append_results "$UPLOAD_MIB MiB uploads (bench/bodies.sh)" "$body"
