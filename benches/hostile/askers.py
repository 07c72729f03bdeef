#!/usr/bin/env python3
"""Clients that ask for answers they size, and a probe that times /_/hello meanwhile.

usage: askers.py BIN CONNS ASKERS [PATH]   (DIR=/some/dir serves it with --dir)
  CONNS idle connections are held; ASKERS clients GET PATH (default
  /_/conns?all) at once and read the whole answer; a separate process sends
  /_/hello every 2 ms and prints its p50, p99 and slowest answer; the
  server's memory above idle is sampled while the askers run.
  e.g. askers.py target/release/fivetuple 15000 200
       mkdir /tmp/big; (cd /tmp/big; seq -f f%06g.txt 100000 | xargs touch)
       DIR=/tmp/big askers.py target/release/fivetuple 10 20 /
"""
import subprocess, socket, time, sys, threading, resource, os
resource.setrlimit(resource.RLIMIT_NOFILE,(20000,20000))
BIN=sys.argv[1]; N=int(sys.argv[2]); K=int(sys.argv[3]); PATH=sys.argv[4] if len(sys.argv)>4 else "/_/conns?all"
srv = subprocess.Popen([BIN,"serve","--listen","127.0.0.1:0","--quiet","--max-conns","19000"]+(["--dir",os.environ["DIR"]] if os.environ.get("DIR") else []), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
port = int(srv.stdout.readline().decode().split(":")[-1])
held=[]
for i in range(N):
    held.append(socket.create_connection(("127.0.0.1",port)))
def rss(): return int(open(f"/proc/{srv.pid}/status").read().split("VmRSS:")[1].split()[0])
time.sleep(0.5); base=rss()
probe = subprocess.Popen([sys.executable,"-c",f'''
import socket,time
s=socket.create_connection(("127.0.0.1",{port})); lat=[]
end=time.time()+8
while time.time()<end:
    t=time.time(); s.sendall(b"GET /_/hello HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n"); b=b""
    while b"World!" not in b: b+=s.recv(4096)
    lat.append(time.time()-t); time.sleep(0.002)
lat.sort(); print("probe n=%d p50=%.1fms p99=%.1fms max=%.1fms"%(len(lat),lat[len(lat)//2]*1e3,lat[int(len(lat)*0.99)]*1e3,lat[-1]*1e3))
'''])
time.sleep(0.3)
peak=[base]
def ask():
    c=socket.create_connection(("127.0.0.1",port)); c.sendall(f"GET {PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    n=0
    while True:
        d=c.recv(1<<16)
        if not d: break
        n+=len(d)
    c.close()
ts=[threading.Thread(target=ask) for _ in range(K)]
t0=time.time()
for t in ts: t.start()
while any(t.is_alive() for t in ts):
    peak.append(rss()); time.sleep(0.05)
print("askers done in %.2fs; rss idle %d KiB, peak %d KiB (+%d)"%(time.time()-t0, base, max(peak), max(peak)-base))
probe.wait()
srv.terminate()
