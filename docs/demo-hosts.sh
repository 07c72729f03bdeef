#!/bin/sh
# Separate hosts on one machine: the story's picture with real, distinct
# remote addresses instead of loopback.
#
# Builds four network namespaces, each a "host" with its own network stack
# and address, joined by a bridge in a fifth one (the "LAN"):
#
#     server  10.50.0.1  ─┐
#     client1 10.50.0.11 ─┤
#     client2 10.50.0.12 ─┼─ bridge (namespace lan)
#     client3 10.50.0.13 ─┘
#
# runs `fivetuple serve` on the server host, `fivetuple connect` on each
# client host, and prints the server's table and the kernel's view from the
# server host: one local address and port, three remote addresses. Every
# namespace (and with it every veth pair) is removed on exit, on failure
# and on Ctrl-C.
#
#     sudo sh docs/demo-hosts.sh          (or: sudo make demo-hosts)
#
# Needs root (or CAP_NET_ADMIN) and iproute2. FIVETUPLE names the binary
# (default: target/release/fivetuple if it exists, else fivetuple on the PATH).
# PORT is the server's port (default 500, the story's; 0 lets the kernel
# pick one, which the script then reads from the server's `listening on` line).
set -eu

if [ -z "${FIVETUPLE:-}" ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ -x "$here/target/release/fivetuple" ]; then
    FIVETUPLE="$here/target/release/fivetuple"
  elif command -v fivetuple >/dev/null 2>&1; then
    FIVETUPLE=fivetuple
  else
    echo "demo-hosts: no fivetuple binary: run 'make build' (or 'make install'), or set FIVETUPLE" >&2
    exit 2
  fi
fi
for tool in ip curl; do
  command -v $tool >/dev/null 2>&1 || { echo "demo-hosts: needs $tool (apt-get install iproute2 curl)" >&2; exit 2; }
done

# Names unique to this run, so two runs never touch each other's hosts.
tag="ft$$"
lan="${tag}-lan"
hosts="server client1 client2 client3"
work=$(mktemp -d)
pids=""

cleanup() {
  # Every process inside a host, whoever started it: a background job's pid
  # may be a subshell's, and killing that would leave the server running
  # (and its namespace alive, though no longer named).
  for h in $hosts; do
    for pid in $(ip netns pids "${tag}-$h" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  for pid in $pids; do wait "$pid" 2>/dev/null || true; done
  for h in $hosts; do ip netns del "${tag}-$h" 2>/dev/null || true; done
  ip netns del "$lan" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$lan" 2>"$work/err"; then
  echo "demo-hosts: cannot create network namespaces ($(cat "$work/err")); run as root" >&2
  exit 2
fi
ip -n "$lan" link add br0 type bridge
ip -n "$lan" link set br0 up

# One host: its own namespace, a veth pair with one end on the bridge.
add_host() {
  name=$1 addr=$2
  ip netns add "${tag}-$name"
  ip link add "${tag}${name}" type veth peer name "${tag}${name}b"
  ip link set "${tag}${name}" netns "${tag}-$name"
  ip link set "${tag}${name}b" netns "$lan"
  ip -n "$lan" link set "${tag}${name}b" master br0 up
  ip -n "${tag}-$name" link set "${tag}${name}" name eth0
  ip -n "${tag}-$name" addr add "$addr/24" dev eth0
  ip -n "${tag}-$name" link set eth0 up
  ip -n "${tag}-$name" link set lo up
}
add_host server 10.50.0.1
add_host client1 10.50.0.11
add_host client2 10.50.0.12
add_host client3 10.50.0.13

in_host() { host=$1; shift; ip netns exec "${tag}-$host" "$@"; }

in_host server "$FIVETUPLE" serve --listen "10.50.0.1:${PORT:-500}" --quiet >"$work/server.out" 2>"$work/server.err" &
pids="$pids $!"
tries=0
until grep -q '^listening on' "$work/server.out" 2>/dev/null; do
  tries=$((tries + 1))
  if [ $tries -gt 200 ]; then
    echo "demo-hosts: the server did not start:" >&2
    cat "$work/server.err" >&2
    exit 1
  fi
  sleep 0.05
done
echo "server host 10.50.0.1: $(head -1 "$work/server.out")"
port=$(sed -n 's/^listening on 10\.50\.0\.1:\([0-9]*\).*/\1/p' "$work/server.out")

for c in 1 2 3; do
  in_host "client$c" "$FIVETUPLE" connect "10.50.0.1:$port" -n 2 --hold 30 >"$work/client$c.out" 2>&1 &
  pids="$pids $!"
done
# Wait until the server's kernel holds all six connections.
established() {
  in_host server "$FIVETUPLE" conns --port "$port" --state established | grep -c "^tcp .*10\.50\.0\.1:$port " || true
}
tries=0
until [ "$(established)" -ge 6 ]; do
  tries=$((tries + 1))
  if [ $tries -gt 100 ]; then
    echo "demo-hosts: the clients did not connect:" >&2
    cat "$work"/client*.out >&2
    exit 1
  fi
  sleep 0.1
done

echo
echo "--- the server's own table (curl http://10.50.0.1:$port/_/conns on client1):"
in_host client1 curl -s "http://10.50.0.1:$port/_/conns"
echo
echo "--- the kernel's table on the server host (fivetuple conns):"
in_host server "$FIVETUPLE" conns --port "$port"
echo
echo "One local address and port (10.50.0.1:$port) on every row; each remote"
echo "address is a different host, and each host's two connections differ"
echo "in their ephemeral port: no two rows share the whole 5-tuple."
