#!/usr/bin/env bash
# cachehit.sh compares a proxy cache hit with nginx serving the same file:
# random 1 MiB ranges of a 64 MiB file, `wrk -t2 -c8`, nginx and the proxy
# alternating twice, then a table of requests per second and the ratio
# proxy/nginx (of the medians). Everything runs on 127.0.0.1 and is stopped
# on exit.
#
# Environment: DURATION (wrk -d, default 10s), ROUNDS (default 2; more
# when the machine is noisy), PROFILE=0 to skip the perf profile of the
# proxy taken during an extra run that is not in the table.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
PROFILE="${PROFILE:-1}"
SIZE=$((64 << 20))
SPAN=$((1 << 20))

need() {
	command -v "$1" >/dev/null && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing $2" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
		command -v "$1" >/dev/null && return 0
	fi
	echo "skipping: $1 is not installed (apt-get install $2, as root)" >&2
	exit 0
}
need nginx nginx
need wrk wrk
need curl curl

t0=$(date +%s)
tmp="$(mktemp -d)"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# freeport prints a loopback port nobody listens on.
freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# waitfor polls a command for up to $1 seconds.
waitfor() {
	local secs=$1
	shift
	for _ in $(seq $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "timed out waiting for: $*" >&2
	return 1
}

echo "building p2sp" >&2
go build -o "$tmp/p2sp" ./cmd/p2sp

# nginx workers may run as nobody: the media must be readable by them.
chmod 755 "$tmp"
mkdir -p "$tmp/media" "$tmp/nginx"
head -c "$SIZE" /dev/urandom >"$tmp/media/bench.bin"
chmod 644 "$tmp/media/bench.bin"

nport=$(freeport)
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	default_type application/octet-stream;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	server {
		listen 127.0.0.1:$nport;
		root $tmp/media;
	}
}
EOF
nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

echo "starting p2sp demo" >&2
"$tmp/p2sp" demo --log-level warn --media "$tmp/media" >"$tmp/demo.out" 2>"$tmp/demo.err" &
demo_pid=$!
pids+=("$demo_pid")
waitfor 60 grep -q 'proxy1 .*/v1/status' "$tmp/demo.out" || { cat "$tmp/demo.err" >&2; exit 1; }
status_url=$(awk '$1 == "proxy1" { print $2 }' "$tmp/demo.out")
proxy_url="${status_url%/v1/status}"
tracker_url=$(awk '$1 == "tracker" { print $2 }' "$tmp/demo.out")
tracker_url="${tracker_url%/v1/files/*}"

nginx_file="http://127.0.0.1:$nport/bench.bin"
proxy_file="$proxy_url/stream/bench.bin"
waitfor 10 curl -fsS -o /dev/null "$nginx_file"
echo "waiting for the origin to register the file" >&2
waitfor 60 curl -fsS -o /dev/null "$tracker_url/v1/files/bench.bin"
echo "filling the proxy's cache" >&2
sum=$(sha256sum <"$tmp/media/bench.bin" | cut -d' ' -f1)
got=$(curl -fsS "$proxy_file" | sha256sum | cut -d' ' -f1)
[ "$got" = "$sum" ] || { echo "proxy served different bytes" >&2; exit 1; }
waitfor 60 sh -c "curl -fsS '$status_url' | grep -q '\"complete\":true'"

# Both must answer a range with 206 and the same bytes before we count.
for url in "$nginx_file" "$proxy_file"; do
	code=$(curl -s -o "$tmp/range.bin" -w '%{http_code}' -H 'Range: bytes=1048576-2097151' "$url")
	if [ "$code" != 206 ] || ! cmp -s "$tmp/range.bin" <(tail -c +1048577 "$tmp/media/bench.bin" | head -c 1048576); then
		echo "$url: range answered $code or with other bytes" >&2
		exit 1
	fi
done

cat >"$tmp/ranges.lua" <<EOF
-- Random 1 MiB ranges, X uniform below SIZE - SPAN.
local size, span = $SIZE, $SPAN
local counter = 0
function setup(thread)
	counter = counter + 1
	thread:set("seed", counter)
end
function init(args)
	math.randomseed(os.time() * 1000 + seed)
end
function request()
	local x = math.random(0, size - span - 1)
	return wrk.format(nil, nil, { Range = "bytes=" .. x .. "-" .. (x + span - 1) })
end
EOF

# run NAME URL: one wrk run; prints requests/s and wrk's transfer/s.
run() {
	local out
	out=$(wrk -t2 -c8 -d"$DURATION" -s "$tmp/ranges.lua" "$2")
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "$1: wrk saw error responses:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk '/^Requests\/sec:/ { r = $2 } /^Transfer\/sec:/ { b = $2 } END { print r, b }' <<<"$out"
}

results=()
for round in $(seq "$ROUNDS"); do
	for side in nginx proxy; do
		url=$nginx_file
		[ "$side" = proxy ] && url=$proxy_file
		echo "run $round: $side" >&2
		results+=("$side $round $(run "$side" "$url")")
	done
done

echo
echo "cache hit, random 1 MiB ranges of a 64 MiB file, wrk -t2 -c8 -d$DURATION, $(nproc) cores"
printf '%s\n' "${results[@]}" | awk '
	{ printf "%-6s run %d  %9.1f req/s  %10s/s\n", $1, $2, $3, $4; v[$1] = v[$1] " " $3 }
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		n = median(v["nginx"]); p = median(v["proxy"])
		printf "median nginx %.1f req/s, proxy %.1f req/s, proxy/nginx %.2fx\n", n, p, p / n
	}'

if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
	echo
	echo "perf profile of the p2sp process during one more proxy run (not in the table):"
	perf record -q -g -o "$tmp/perf.data" -p "$demo_pid" -- sleep 8 2>"$tmp/perf.err" &
	perf_pid=$!
	pids+=("$perf_pid")
	sleep 1
	wrk -t2 -c8 -d6s -s "$tmp/ranges.lua" "$proxy_file" >/dev/null
	if wait "$perf_pid"; then
		# report SORT LIMIT [OPTIONS]: perf's table, flattened, first LIMIT lines.
		report() {
			local sort=$1 limit=$2
			shift 2
			perf report -q -i "$tmp/perf.data" --stdio --no-children --sort "$sort" -g none "$@" >"$tmp/report.txt" 2>/dev/null || true
			grep -v '^$' "$tmp/report.txt" | awk '{ $1 = $1; sub(/ - -$/, ""); print "  " $0 }' | head -"$limit" || true
		}
		echo "by binary:"
		report dso 4
		echo "by function (over 1%):"
		report dso,symbol 15 --percent-limit 1
		echo "in p2sp's own code (share of all samples):"
		report symbol 20 --dsos p2sp
	else
		echo "perf could not record: $(head -3 "$tmp/perf.err")"
	fi
fi
echo
echo "wall time $(($(date +%s) - t0)) s"
