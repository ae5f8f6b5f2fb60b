# lib.sh: helpers the benchmark scripts in test/bench share; sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"
#
# Each script keeps its own temporary directory and PIDS array (cleanup
# kills what they list); these only start things and read figures.

# freeport prints a TCP port free on loopback now.
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# waitport PORT waits up to 10 s for something to listen on PORT.
waitport() {
	for _ in $(seq 200); do
		(echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	return 1
}

# ticks PID prints the user+system CPU time of a process, in clock ticks.
ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }

# rcpu PORT prints the CPU seconds redis-server on PORT has used.
rcpu() { redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/{s+=$2} END{print s}'; }

# bench_redis PORT DIR starts a redis-server as the benchmarks measure
# mailgate with it (AOF everysec, no RDB) and adds it to PIDS.
bench_redis() {
	redis-server --port "$1" --bind 127.0.0.1 --dir "$2" --appendonly yes \
		--appendfsync everysec --save "" --logfile "$2/../redis.log" &
	PIDS+=($!)
}

# bench_config HTTP_PORT REDIS_PORT SINK_PORT prints a mailgate config: the
# API on HTTP_PORT, Redis on REDIS_PORT, one route of type smtp (no TLS,
# 8 connections) to SINK_PORT and the app "bench" with a default From.
bench_config() {
	cat <<CONFIG
listen: 127.0.0.1:$1
redis:
  url: redis://127.0.0.1:$2/0
auth:
  signing_key: "bench-signing-key-0123456789abcdef0123456789"
routes:
  - name: sink
    type: smtp
    host: 127.0.0.1
    port: $3
    tls:
      mode: none
    limits:
      max_connections: 8
apps:
  - id: bench
    route: sink
    from:
      default: "Bench <bench@example.com>"
CONFIG
}
