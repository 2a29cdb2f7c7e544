#!/usr/bin/env bash
# Renders docs/top.png, the screenshot of `reserve top` in docs/CLI.md:
# builds reserve, starts a throwaway redis-server (or uses $REDIS_URL: it
# then writes reservations there), holds a few reservations with
# `reserve run ... -- sleep` in the background (a holder with a waiter
# queued behind it, a semaphore, a Node-style holder), runs reserve top in
# a detached tmux session of 120x30, makes a few changes (a release, an
# expiry, a takeover), captures the pane with its colours, and renders it
# with docs/ansi2png (Go Mono, golang.org/x/image).
#
# Needs: go, tmux, redis-server and redis-cli. Not run by CI.
set -euo pipefail

docs=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$docs")
work=$(mktemp -d)
sock="reserve-top-shot-$$"
pids=()
redis_pid=""

cleanup() {
	local path
	path=$(tmux -L "$sock" display-message -p '#{socket_path}' 2>/dev/null) || true
	tmux -L "$sock" kill-server 2>/dev/null || true
	[ -n "$path" ] && rm -f "$path"
	# reserve run releases and ends its command on SIGTERM.
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$redis_pid" ]; then
		kill "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -C "$root/cmd/reserve" -o "$work/reserve" .
reserve="$work/reserve"

if [ -z "${REDIS_URL:-}" ]; then
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
	redis_pid=$!
	export REDIS_URL="redis://127.0.0.1:$port"
	for _ in $(seq 50); do
		redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	"$reserve" prime >/dev/null
fi

# run BY RESOURCE [FLAGS...]: hold RESOURCE as BY in the background.
run() {
	local by=$1 resource=$2
	shift 2
	"$reserve" run --by "$by" "$@" "$resource" -- sleep 600 >/dev/null 2>&1 &
	pids+=($!)
}
# node RESOURCE VALUE MS: hold RESOURCE as a Node worker does (a plain SET).
node() {
	redis-cli -u "$REDIS_URL" set "reservation-$1" "$2" px "$3" >/dev/null
}

run web-1 nightly-report
sleep 0.3
run web-2 nightly-report # queued behind web-1
run web-3 invoice:42
run export-a exports --limit 3
run export-b exports --limit 3
node legacy-sync node-worker-4711 90000
sleep 2 # let the holdings age a little

tmux -L "$sock" -f /dev/null new-session -d -x 120 -y 30 \
	-e "REDIS_URL=$REDIS_URL" -e TERM=xterm-256color "$reserve top"
sleep 1.5

# The changes: one released (with its waiter taking its turn), one left to
# expire, one taken over by a waiter once its Node-style holder expired.
run cron-7 cache-warm
cron=$!
node report:eu node-worker-88 1800
node reindex node-worker-12 2500
sleep 1.2
run web-5 reindex # waits for the expiry, then takes it over
kill -TERM "$cron" # cron-7 releases cache-warm
sleep 3.5
run web-6 invoice:43
sleep 1.2

tmux -L "$sock" capture-pane -e -p -t 0 >"$work/top.ans"
go run -C "$docs/ansi2png" . -o "$docs/top.png" <"$work/top.ans"
echo "wrote $docs/top.png"
