#!/usr/bin/env python3
"""Accepts at the cap: 15,000 connections held, each answered once, at
--max-conns 15000; then newcomers arrive and stay, so that every accept must
close the idlest connection to make room. Reports newcomers per second and
the server's CPU time per newcomer (its own figure, whatever the client's
speed).

usage: reclaim.py BIN [HELD] [NEWCOMERS]
"""
import os, resource, selectors, socket, subprocess, sys, time

resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
BIN = sys.argv[1]
HELD = int(sys.argv[2]) if len(sys.argv) > 2 else 15000
NEW = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
WINDOW = 64
REQ = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n"

srv = subprocess.Popen(
    [BIN, "serve", "--listen", "127.0.0.1:0", "--quiet", "--max-conns", str(HELD)],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
port = int(srv.stdout.readline().decode().split(":")[-1])
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open(f"/proc/{srv.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

sel = selectors.DefaultSelector()
held = []
for i in range(HELD):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(REQ)
    held.append(s)
for s in held:
    s.recv(1000)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, "held")

start, cpu0 = time.monotonic(), cpu()
done = inflight = 0
while done < NEW:
    while inflight < WINDOW and done + inflight < NEW:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, "new")
        inflight += 1
    for key, ev in sel.select(5):
        s = key.fileobj
        if key.data == "new" and ev & selectors.EVENT_WRITE:
            s.send(REQ)
            sel.modify(s, selectors.EVENT_READ, "asked")
            continue
        try:
            data = s.recv(1000)
        except (BlockingIOError, ConnectionError):
            data = b""
        if key.data == "asked" and data:
            # answered: it stays, idle, and will be reclaimed in its turn
            sel.modify(s, selectors.EVENT_READ, "held")
            inflight -= 1
            done += 1
        elif not data:
            # the server closed it to make room (or refused it)
            if key.data == "asked":
                inflight -= 1
            sel.unregister(s)
            s.close()
elapsed, used = time.monotonic() - start, cpu() - cpu0
print(f"{NEW} newcomers at the cap with {HELD} held: {NEW / elapsed:,.0f}/s, "
      f"server CPU {used * 1e6 / NEW:,.1f} µs per newcomer")
srv.terminate()
