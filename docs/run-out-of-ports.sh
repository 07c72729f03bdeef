#!/bin/sh
# Runs out of ephemeral ports on purpose, then goes past the limit with more
# source addresses. Run it in a scratch network namespace, which has its own
# loopback and its own port range, so nothing outside is touched:
#
#     sudo unshare --net sh docs/run-out-of-ports.sh
#
# FIVETUPLE names the binary (default: fivetuple on the PATH).
set -e
FIVETUPLE=${FIVETUPLE:-fivetuple}
ip link set lo up
echo "40000 40009" > /proc/sys/net/ipv4/ip_local_port_range
echo "ephemeral port range: $(cat /proc/sys/net/ipv4/ip_local_port_range)"

out=$(mktemp)
"$FIVETUPLE" serve --listen 127.0.0.1:8500 --quiet > "$out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT
# Wait (at most 10 s) for the server to say it is listening.
tries=0
until grep -q '^listening on' "$out"; do
  tries=$((tries + 1)); [ $tries -le 200 ] || { echo "server did not start" >&2; exit 1; }
  sleep 0.05
done

echo "--- 12 connections from one source address:"
"$FIVETUPLE" connect 127.0.0.1:8500 -n 12 --hold 1 --each || true
echo "--- 12 connections from two source addresses:"
"$FIVETUPLE" connect 127.0.0.1:8500 -n 12 --hold 1 --each --source 127.0.0.2,127.0.0.3
