#!/usr/bin/env bash
# Runs the demo: workers contending for reservations, live, for about 15 s.
# It uses $REDIS_URL or a Redis on 127.0.0.1:6379 when one answers, and
# otherwise starts a throwaway redis-server, which it installs first (from
# Debian's packages) when the machine has none.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (apt-get)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
exec go run -C cmd/reserve . demo "$@"
