#!/bin/sh
# Runs the load test (TestLoad) against one real mailgate process — role
# all, a redis-server with AOF everysec, delivering over plain SMTP to
# Postfix's smtp-sink — and reports that process's peak RSS (VmHWM) next
# to the load test's own figures. Arguments go to the load test, e.g.
#   test/bench/instance-rss.sh -load.n 2000 -load.c 32 -load.big 5
# Needs redis-server, smtp-sink (postfix) and python3 (free ports).
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() {
	i=0
	until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
		i=$((i+1)); [ $i -lt 100 ] || { echo "nothing listens on port $1" >&2; exit 1; }
		sleep 0.1
	done
}

go build -o "$tmp/mailgate" ./cmd/mailgate

rport=$(freeport)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
	--dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
pids="$pids $!"
sport=$(freeport)
# smtp-sink: accept everything, a backlog of 256; as root it wants a user
# to run as.
user=""
[ "$(id -u)" != 0 ] || user="-u nobody"
# shellcheck disable=SC2086
smtp-sink $user "127.0.0.1:$sport" 256 >"$tmp/sink.log" 2>&1 &
pids="$pids $!"
aport=$(freeport)
waitport "$rport"
waitport "$sport"

cat >"$tmp/mailgate.yaml" <<YAML
listen: "127.0.0.1:$aport"
redis:
  url: "redis://127.0.0.1:$rport/0"
auth:
  signing_key: "load-test-signing-key-0123456789abcdef0123456789"
log:
  level: warn
routes:
  - name: sink
    type: smtp
    host: 127.0.0.1
    port: $sport
    tls:
      mode: none
    limits:
      max_connections: 8
apps:
  - id: load
    route: sink
    max_message_bytes: 26214400
    from:
      default: "Alerts <alerts@alerts.contoso.com>"
      allowed: ["*@alerts.contoso.com"]
    recipients:
      allowed: ["*@contoso.com"]
YAML

token=$("$tmp/mailgate" token issue --config "$tmp/mailgate.yaml" --app load 2>/dev/null)
"$tmp/mailgate" serve --config "$tmp/mailgate.yaml" --role all >"$tmp/mailgate.log" 2>&1 &
mg=$!
pids="$mg $pids"
waitport "$aport"

go test ./test/bench -run TestLoad -v -count=1 -load \
	-load.url "http://127.0.0.1:$aport" -load.token "$token" -load.to ops@contoso.com -load.pid "$mg" "$@" ||
	{ tail -20 "$tmp/mailgate.log" >&2; exit 1; }
