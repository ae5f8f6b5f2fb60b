#!/usr/bin/env bash
# Installs redis-server when it is missing: the queue and end-to-end tests
# start a real one on a free port. Debian/Ubuntu only; elsewhere it says what
# to install.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server not found; installing it (apt-get install -y redis-server)" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "not root and no sudo: install redis-server (Redis 7) yourself, then run make test again" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install redis-server (Redis 7) with your package manager, then run make test again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq redis-server >/dev/null
# The package may start a system instance; the tests start their own on free ports.
command -v redis-server >/dev/null
redis-server --version
