#!/usr/bin/env python3
"""A reader of the server's stderr that stops: are clients still answered?

usage: N=30000 stall.py [serve flags]   (run from the repository root)
  Sends N keep-alive requests with stderr piped and never read, then shows
  the dropped-lines counter from /_/metrics.
"""
import subprocess, socket, time, sys, os
srv = subprocess.Popen(["target/release/fivetuple","serve","--listen","127.0.0.1:0"]+sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
line = srv.stdout.readline().decode()
port = int(line.split(":")[-1])
print(line.strip())
s = socket.create_connection(("127.0.0.1", port))
req = b"GET /_/hello HTTP/1.1\r\nHost: t\r\nUser-Agent: stall-test\r\n\r\n"
t0=time.time()
for i in range(int(os.environ.get("N","5000"))):
    s.sendall(req)
    buf=b""
    while b"Hello, World!" not in buf:
        d=s.recv(4096)
        if not d: raise SystemExit("closed")
        buf+=d
print("requests in %.2fs" % (time.time()-t0))
c = socket.create_connection(("127.0.0.1", port)); c.settimeout(2)
c.sendall(b"GET /_/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
m=b""
while True:
    d=c.recv(65536)
    if not d: break
    m+=d
print([l for l in m.decode().splitlines() if "dropped_total{" in l and "output" in l])
# now read stderr a bit
os.set_blocking(srv.stderr.fileno(), False)
time.sleep(0.5)
data = srv.stderr.read(200000) or b""
print(data[:300].decode(errors="replace"))
time.sleep(0.3)
data = srv.stderr.read(2000000) or b""
lines=[l for l in data.decode(errors="replace").splitlines() if "dropped" in l]
print(lines[:3])
srv.terminate(); srv.wait(5); print("exit", srv.returncode)
