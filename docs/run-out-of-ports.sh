#!/bin/sh
# Runs out of ephemeral ports on purpose, then goes past the limit with more
# source addresses. Run it in a scratch network namespace, which has its own
# loopback and its own port range, so nothing outside is touched:
#
#     sudo unshare --net sh docs/run-out-of-ports.sh
#
# or, as a normal user where the kernel allows user namespaces:
#
#     unshare --user --map-root-user --net sh docs/run-out-of-ports.sh
#
# The binary: $FIVETUPLE if set, else the one `make` built next to this
# script (target/release/fivetuple), else `fivetuple` on the PATH.
set -e

here=$(dirname "$0")
if [ -n "$FIVETUPLE" ]; then
  bin=$FIVETUPLE
elif [ -x "$here/../target/release/fivetuple" ]; then
  bin=$here/../target/release/fivetuple
elif command -v fivetuple >/dev/null 2>&1; then
  bin=fivetuple
else
  echo "no fivetuple binary: run \`make\` in the repository (it builds target/release/fivetuple)," >&2
  echo "or \`make install\`, or set FIVETUPLE=/path/to/fivetuple" >&2
  exit 1
fi

how="run it in a network namespace of its own: sudo unshare --net sh $0
or, as a normal user: unshare --user --map-root-user --net sh $0"
# A fresh namespace has no interface up but (soon) its loopback. Anywhere
# else, setting the port range would narrow it for the whole machine: refuse.
if ip -o link show up 2>/dev/null | grep -qv ': lo:'; then
  echo "this is not a scratch network namespace (it has interfaces up besides lo), and the script" >&2
  echo "would narrow this machine's ephemeral port range; $how" >&2
  exit 1
fi
if ! ip link set lo up 2>/dev/null || ! echo "40000 40009" > /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
  echo "cannot bring up loopback or set the port range here; $how" >&2
  exit 1
fi
echo "ephemeral port range: $(cat /proc/sys/net/ipv4/ip_local_port_range)"

out=$(mktemp)
err=$(mktemp)
"$bin" serve --listen 127.0.0.1:8500 --quiet > "$out" 2> "$err" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out" "$err"' EXIT
# A signal (Ctrl-C, or a closed pipe as in `| head`) becomes an exit, so the
# cleanup above runs and the server does not outlive the script.
trap 'exit 1' INT TERM HUP PIPE
# Wait for the server to say it is listening; if it exits first, show why.
tries=0
until grep -q '^listening on' "$out"; do
  if ! kill -0 $server 2>/dev/null; then
    echo "the server did not start:" >&2
    cat "$err" >&2
    exit 1
  fi
  tries=$((tries + 1))
  if [ $tries -gt 200 ]; then
    echo "the server printed no \`listening on\` line within 10 s; its log so far:" >&2
    cat "$err" >&2
    exit 1
  fi
  sleep 0.05
done

echo "--- 12 connections from one source address:"
"$bin" connect 127.0.0.1:8500 -n 12 --hold 1 --each || true
echo "--- 12 connections from two source addresses:"
"$bin" connect 127.0.0.1:8500 -n 12 --hold 1 --each --source 127.0.0.2,127.0.0.3
