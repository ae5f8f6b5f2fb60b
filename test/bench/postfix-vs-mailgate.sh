#!/usr/bin/env bash
# postfix-vs-mailgate.sh: Postfix and mailgate side by side on this machine,
# on the same ~2 KB messages, each relaying to its own smtp-sink on loopback.
#
#   test/bench/postfix-vs-mailgate.sh            # 20000 messages, 64 clients
#   N=5000 C=32 BASE=<rev> test/bench/postfix-vs-mailgate.sh
#   ROLE=api test/bench/postfix-vs-mailgate.sh   # mailgate accepts only
#   POSTFIX=0 test/bench/postfix-vs-mailgate.sh  # mailgate only
#
# What runs, one after the other, in one run:
#   1. mailgate built from BASE (the baseline; by default the merge base
#      of HEAD and main), role all, one process;
#   2. mailgate built from the working tree, the same way;
#   3. mailgate from the working tree again, the same messages sent as
#      batches of BATCH (POST /v1/messages/batch) from BATCH_C clients;
#   4. Postfix (Debian's package) as its own instance from a temporary
#      config directory, smtpd on a loopback port, relayhost an smtp-sink;
#   5. the ceiling: the same load against test/bench/nullserver, an HTTP
#      server that reads each request and answers 202 and nothing else,
#      which is what the load generator and net/http cost on this machine
#      with no gateway, Redis or mail in between (NULL=0 skips it).
# Each mailgate gets a fresh redis-server with AOF `everysec` and a route of
# type smtp (no TLS) to its smtp-sink, 8 connections. The load generator
# (test/bench/loadgen) posts N JSON submissions from C clients; Postfix's
# load is `smtp-source -s 20 -l 2048 -m N`. "accept" is messages accepted
# per second of the load; "e2e" is messages counted by the sink per second
# from the load's start to the last one. With ROLE=api mailgate runs
# `serve --role api` (no workers in the process, nothing delivered): what
# the door alone takes; Postfix runs as always.
#
# Needs root (Postfix's master runs as root; smtp-sink drops to nobody),
# Go, redis-server, postfix, smtp-sink and smtp-source (make deps). It
# asserts nothing: it prints figures.
set -euo pipefail

N=${N:-20000}
C=${C:-64}
SIZE=${SIZE:-2048}
BATCH=${BATCH:-100}
BATCH_C=${BATCH_C:-8} # clients sending batches: 8 × 100 messages in flight
ROLE=${ROLE:-all}
POSTFIX=${POSTFIX:-1} # 0: skip Postfix (its run takes about a minute)
NULL=${NULL:-1}       # 0: skip the null server's ceiling
# The baseline: by default where this branch last met main (the state
# before the change under test); give BASE=<rev> once it is merged.
BASE=${BASE:-$(git -C "$(dirname "$0")" merge-base HEAD main)}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)

for b in redis-server redis-cli postfix postconf smtp-sink smtp-source script go python3; do
	command -v "$b" >/dev/null || { echo "missing $b (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root: Postfix's master needs it" >&2; exit 1; }

T=$(mktemp -d /tmp/pvm.XXXXXX)
chmod 755 "$T"
PIDS=()
PF_STARTED=
cleanup() {
	[ -n "$PF_STARTED" ] && postfix -c "$T/pf/etc" stop >/dev/null 2>&1 || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh" # freeport, waitport, ticks, rcpu, bench_redis, bench_config

echo "building mailgate at $BASE (baseline) and at the working tree ..." >&2
mkdir -p "$T/base"
git -C "$ROOT" archive "$BASE" | tar -x -C "$T/base"
(cd "$T/base" && go build -o "$T/mailgate-base" ./cmd/mailgate)
(cd "$ROOT" && go build -o "$T/mailgate-new" ./cmd/mailgate && go build -o "$T/loadgen" ./test/bench/loadgen &&
	go build -o "$T/nullserver" ./test/bench/nullserver)

# sink PORT FILE: an smtp-sink counting messages into FILE.
sink() {
	smtp-sink -u nobody -c 127.0.0.1:"$1" 256 >"$2" 2>/dev/null &
	PIDS+=($!)
	waitport "$1"
}

# mailgate NAME BINARY [BATCH]: one measured run; prints its loadgen line.
mailgate() {
	local name=$1 bin=$2 batch=${3:-0} d="$T/$1"
	mkdir -p "$d/redis"
	local rp hp sp
	rp=$(freeport); hp=$(freeport); sp=$(freeport)
	bench_redis "$rp" "$d/redis"
	local redis=${PIDS[-1]}
	sink "$sp" "$d/sink.out"
	local sinkpid=${PIDS[-1]}
	bench_config "$hp" "$rp" "$sp" >"$d/config.yaml"
	waitport "$rp"
	"$bin" serve --config "$d/config.yaml" --role "$ROLE" >"$d/mailgate.log" 2>&1 &
	local mg=$!
	PIDS+=($mg)
	waitport "$hp"
	local tok
	tok=$("$bin" token issue --config "$d/config.yaml" --app bench)
	local watch=(-sink "$d/sink.out")
	[ "$ROLE" = all ] || watch=()
	local c0 r0 line clients=$C
	[ "$batch" = 0 ] || clients=$BATCH_C
	c0=$(ticks "$mg"); r0=$(rcpu "$rp")
	line=$("$T/loadgen" -url "http://127.0.0.1:$hp" -token "$tok" -n "$N" -c "$clients" -size "$SIZE" \
		-batch "$batch" "${watch[@]}")
	# CPU per message of the mailgate process and of redis-server: what
	# each message costs, which moves less than the rates on a shared
	# machine.
	echo "$line $(python3 -c 'import sys; c0,c1,hz,r0,r1,n=map(float,sys.argv[1:]); print("cpu_us_per_msg=%.0f redis_cpu_us_per_msg=%.0f"%((c1-c0)/hz*1e6/n,(r1-r0)*1e6/n))' \
		"$c0" "$(ticks "$mg")" "$(getconf CLK_TCK)" "$r0" "$(rcpu "$rp")" "$N")"
	kill "$mg" "$sinkpid" "$redis" 2>/dev/null || true
	wait "$mg" "$sinkpid" "$redis" 2>/dev/null || true
}

postfix_run() {
	local d="$T/pf" pp sp
	pp=$(freeport); sp=$(freeport)
	mkdir -p "$d/etc" "$d/queue" "$d/data"
	chown postfix "$d/data"
	cp /etc/postfix/master.cf /etc/postfix/postfix-files "$d/etc/"
	cp -r /etc/postfix/postfix-files.d "$d/etc/" 2>/dev/null || true
	cp /etc/postfix/dynamicmaps.cf "$d/etc/" 2>/dev/null || true
	cp -r /etc/postfix/dynamicmaps.cf.d "$d/etc/" 2>/dev/null || true
	sed -i "s/^smtp      inet.*/127.0.0.1:$pp inet n - n - - smtpd/" "$d/etc/master.cf"
	cat >"$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
myhostname = bench.localdomain
mydomain = localdomain
myorigin = localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sp
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = $d
maillog_file = $d/maillog
smtp_tls_security_level = none
smtpd_tls_security_level = none
EOF
	postconf -c "$d/etc" -F '*/*/chroot = n'
	sink "$sp" "$d/sink.out"
	# postfix logs its own start-up errors only to syslog or a terminal
	script -qc "postfix -c $d/etc start" /dev/null >"$d/start.log" 2>&1 || { cat "$d/start.log" >&2; return 1; }
	PF_STARTED=1
	waitport "$pp"
	local t0 t1 t2 got=0
	t0=$(now)
	smtp-source -s 20 -l 2048 -m "$N" -f bench@localdomain -t ops@example.com 127.0.0.1:"$pp"
	t1=$(now)
	for _ in $(seq 6000); do
		got=$(tr '\r' '\n' <"$d/sink.out" | tail -1 | sed -n 's/.*mesg=\([0-9]*\).*/\1/p')
		[ "${got:-0}" -ge "$N" ] && break
		sleep 0.05
	done
	t2=$(now)
	python3 -c "import sys; n,g,t0,t1,t2=int(sys.argv[1]),int(sys.argv[2] or 0),*map(float,sys.argv[3:]); print('accepted=%d seconds=%.3f accept_rate=%.0f delivered=%d delivery_seconds=%.3f delivery_rate=%.0f'%(n,t1-t0,n/(t1-t0),g,t2-t0,g/(t2-t0)))" "$N" "${got:-0}" "$t0" "$t1" "$t2"
	postfix -c "$d/etc" stop >/dev/null 2>&1 || true
	PF_STARTED=
}

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $N messages of ~$SIZE bytes, $C clients, mailgate role $ROLE" >&2
# Each run writes its line to a file (not $(...): a subshell would keep
# the processes it starts from cleanup).
mailgate base "$T/mailgate-base" >"$T/base.out"
base=$(cat "$T/base.out")
echo "mailgate $BASE: $base" >&2
mailgate new "$T/mailgate-new" >"$T/new.out"
new=$(cat "$T/new.out")
echo "mailgate working tree: $new" >&2
mailgate batch "$T/mailgate-new" "$BATCH" >"$T/batch.out"
batch=$(cat "$T/batch.out")
echo "mailgate working tree, batches of $BATCH: $batch" >&2
pf=""
if [ "$POSTFIX" != 0 ]; then
	postfix_run >"$T/pf.out"
	pf=$(cat "$T/pf.out")
fi
echo "postfix $(postconf -d -h mail_version): $pf" >&2
ceiling=""
if [ "$NULL" != 0 ]; then
	np=$(freeport)
	"$T/nullserver" -listen 127.0.0.1:"$np" &
	PIDS+=($!)
	waitport "$np"
	ceiling=$("$T/loadgen" -url "http://127.0.0.1:$np" -token none -n "$N" -c "$C" -size "$SIZE")
	echo "null server (ceiling): $ceiling" >&2
fi

python3 - "$base" "$new" "$batch" "$pf" "$ceiling" "$BASE" "$BATCH" <<'EOF'
import sys
def kv(s): return dict(x.split("=", 1) for x in s.split() if "=" in x)
base, new, batch, pf, null = (kv(s) for s in sys.argv[1:6])
rev, n = sys.argv[6], sys.argv[7]
f = lambda d, k: float(d.get(k, "0").strip('"') or 0)
rows = [("mailgate " + rev[:10] + " (baseline)", base), ("mailgate (this tree)", new),
        ("mailgate, batches of " + n, batch), ("postfix (smtp-source -s 20)", pf),
        ("null server (ceiling)", null)]
print("%-32s %10s %9s %9s %9s %13s %15s" % ("", "accept/s", "p50", "p99", "e2e/s", "CPU µs/msg", "redis µs/msg"))
for name, d in rows:
    print("%-32s %10.0f %9s %9s %9s %13s %15s" % (name, f(d, "accept_rate"), d.get("p50", "-"), d.get("p99", "-"),
        d.get("delivery_rate", "-"), d.get("cpu_us_per_msg", "-"), d.get("redis_cpu_us_per_msg", "-")))
r = lambda a, b: (a / b) if b else float("nan")
print()
print("this tree / baseline:  accept %.2fx  e2e %.2fx  CPU per message %.2fx" % (r(f(new, "accept_rate"), f(base, "accept_rate")),
    r(f(new, "delivery_rate"), f(base, "delivery_rate")), r(f(new, "cpu_us_per_msg"), f(base, "cpu_us_per_msg"))))
print("this tree / postfix:   accept %.2fx  e2e %.2fx" % (r(f(new, "accept_rate"), f(pf, "accept_rate")), r(f(new, "delivery_rate"), f(pf, "delivery_rate"))))
print("batches / postfix:     accept %.2fx  e2e %.2fx" % (r(f(batch, "accept_rate"), f(pf, "accept_rate")), r(f(batch, "delivery_rate"), f(pf, "delivery_rate"))))
print("batches / baseline:    accept %.2fx  CPU per message %.2fx" % (r(f(batch, "accept_rate"), f(base, "accept_rate")),
    r(f(batch, "cpu_us_per_msg"), f(base, "cpu_us_per_msg"))))
if f(null, "accept_rate"):
    print("ceiling / baseline:    accept %.2fx  (no gateway at all: the most any single-submission change can give here)" % (
        r(f(null, "accept_rate"), f(base, "accept_rate"))))
EOF
