#!/usr/bin/env bash
# Installs the real programs the tests run, when any is missing: the tests use
# them as peers and clients instead of mocks, and fail naming the package when
# one is absent. Debian/Ubuntu only; elsewhere it says what to install.
#
#   redis-server, redis-sentinel   the queue; Sentinel and Cluster topologies
#   postfix                        a strict SMTP peer (strict_rfc821_envelopes),
#                                  smtp-sink and smtp-source for benchmarks
#   swaks, curl, python3           SMTP clients for the SMTP door
#   bsd-mailx                      a real `mail` command for the sendmail shim
#   prometheus                     promtool, to unit-test the alert rules
#   prometheus-alertmanager        a real Alertmanager posting webhooks
#   systemd                        systemd-analyze, to verify deploy/systemd's unit
set -euo pipefail

# command -> Debian package
declare -A need=(
  [redis-server]=redis-server
  [redis-sentinel]=redis-sentinel
  [redis-cli]=redis-tools
  [postfix]=postfix
  [smtp-sink]=postfix
  [swaks]=swaks
  [curl]=curl
  [/usr/bin/python3]=python3
  [bsd-mailx]=bsd-mailx
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [systemd-analyze]=systemd
)

missing=()
for cmd in "${!need[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ] && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${need[$cmd]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing test dependencies: ${missing[*]} (apt-get install -y)" >&2

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "not root and no sudo: install ${missing[*]} yourself, then run make test again" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install ${missing[*]} with your package manager, then run make test again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix must not configure or start a system mail server: the tests run
# their own instances on free ports.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Packages may start system instances; the tests start their own on free ports.
for svc in redis-server redis-sentinel postfix prometheus-alertmanager prometheus prometheus-node-exporter; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
redis-server --version
