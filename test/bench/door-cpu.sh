#!/usr/bin/env bash
# door-cpu.sh: what one single JSON submission costs the door, for some
# baseline revisions and the working tree, measured in one run.
#
#   test/bench/door-cpu.sh c6c800d main        # baselines, then this tree
#   ROUNDS=5 N=20000 C=64 SIZE=2048 test/bench/door-cpu.sh c6c800d
#
# Each revision is built, then every round runs each build in turn as
# `serve --role api` against a fresh redis-server (AOF everysec) and posts
# N JSON submissions of ~SIZE bytes from C clients with test/bench/loadgen
# (after 2000 to warm up). Per message it prints the mailgate process's CPU
# time (user+system, /proc/PID/stat), redis-server's (INFO cpu), and the
# process's allocations (go_memstats_mallocs_total and
# go_memstats_alloc_bytes_total from its /metrics, before and after), then
# the median and range of each over the rounds. CPU moves with the
# machine's load; alternating the builds round by round keeps the
# comparison fair, and the allocations do not move at all. It asserts
# nothing: it prints figures.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
N=${N:-20000}
C=${C:-64}
SIZE=${SIZE:-2048}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)

for b in redis-server redis-cli curl go python3; do
	command -v "$b" >/dev/null || { echo "missing $b (make deps)" >&2; exit 1; }
done

T=$(mktemp -d /tmp/door-cpu.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh" # freeport, waitport, ticks, rcpu, bench_redis, bench_config
mallocs() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^go_memstats_mallocs_total /{m=$2} /^go_memstats_alloc_bytes_total /{b=$2} END{print m, b}'; }

names=()
for rev in "$@"; do
	name=$(git -C "$ROOT" rev-parse --short "$rev")
	echo "building $rev ($name) ..." >&2
	mkdir -p "$T/src-$name"
	git -C "$ROOT" archive "$rev" | tar -x -C "$T/src-$name"
	(cd "$T/src-$name" && go build -o "$T/mailgate-$name" ./cmd/mailgate)
	names+=("$name")
done
echo "building the working tree ..." >&2
(cd "$ROOT" && go build -o "$T/mailgate-tree" ./cmd/mailgate && go build -o "$T/loadgen" ./test/bench/loadgen)
names+=(tree)

# run NAME: one measured run of mailgate-NAME; prints one line.
run() {
	local name=$1 d="$T/run"
	rm -rf "$d"
	mkdir -p "$d/redis"
	local rp hp
	rp=$(freeport); hp=$(freeport)
	bench_redis "$rp" "$d/redis"
	local redis=${PIDS[-1]}
	# No mail leaves a role api process: the route only has to be valid.
	bench_config "$hp" "$rp" 25 >"$d/config.yaml"
	waitport "$rp"
	"$T/mailgate-$name" serve --config "$d/config.yaml" --role api >"$d/mailgate.log" 2>&1 &
	local mg=$!
	PIDS+=($mg)
	waitport "$hp"
	local tok
	tok=$("$T/mailgate-$name" token issue --config "$d/config.yaml" --app bench 2>/dev/null)
	"$T/loadgen" -url "http://127.0.0.1:$hp" -token "$tok" -n 2000 -c "$C" -size "$SIZE" >/dev/null
	local c0 r0 m0 c1 r1 m1 line
	m0=$(mallocs "$hp"); c0=$(ticks "$mg"); r0=$(rcpu "$rp")
	line=$("$T/loadgen" -url "http://127.0.0.1:$hp" -token "$tok" -n "$N" -c "$C" -size "$SIZE")
	c1=$(ticks "$mg"); r1=$(rcpu "$rp"); m1=$(mallocs "$hp")
	echo "$name $line $(python3 -c 'import sys; c0,c1,hz,r0,r1,n,m0,b0,m1,b1=map(float,sys.argv[1:]); print("cpu_us_per_msg=%.1f redis_cpu_us_per_msg=%.1f allocs_per_msg=%.0f kb_per_msg=%.1f"%((c1-c0)/hz*1e6/n,(r1-r0)*1e6/n,(m1-m0)/n,(b1-b0)/n/1024))' \
		"$c0" "$c1" "$(getconf CLK_TCK)" "$r0" "$r1" "$N" $m0 $m1)"
	kill "$mg" "$redis" 2>/dev/null || true
	wait "$mg" "$redis" 2>/dev/null || true
}

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds of $N messages of ~$SIZE bytes, $C clients, role api" >&2
for r in $(seq "$ROUNDS"); do
	for name in "${names[@]}"; do
		run "$name" | tee -a "$T/lines"
	done
done

python3 - "$T/lines" "${names[@]}" <<'EOF'
import statistics, sys
lines, names = sys.argv[1], sys.argv[2:]
runs = {n: [] for n in names}
for l in open(lines):
    f = l.split()
    runs[f[0]].append(dict(x.split("=", 1) for x in f[1:] if "=" in x))
keys = ["accept_rate", "p99", "cpu_us_per_msg", "redis_cpu_us_per_msg", "allocs_per_msg", "kb_per_msg"]
def num(v):  # a number, or a Go duration in ms
    for unit, scale in (("ms", 1), ("µs", 1e-3), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[:-len(unit)]) * scale
    return float(v)
print()
print("%-10s" % "median" + "".join("%24s" % k for k in keys))
for n in names:
    cells = []
    for k in keys:
        v = [num(r[k]) for r in runs[n] if k in r]
        cells.append("%.1f (%.1f-%.1f)" % (statistics.median(v), min(v), max(v)) if v else "-")
    print("%-10s" % n + "".join("%24s" % c for c in cells))
EOF
