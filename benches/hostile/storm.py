#!/usr/bin/env python3
"""A subscribe/close storm on /_/events from 4 clients: how many are refused?

usage: storm.py BIN
"""
import subprocess, socket, time, sys, threading
srv = subprocess.Popen([sys.argv[1],"serve","--listen","127.0.0.1:0","--quiet"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
port = int(srv.stdout.readline().decode().split(":")[-1])
res={"ok":0,"503":0,"other":0}
lock=threading.Lock()
def worker():
    end=time.time()+4
    while time.time()<end:
        c=socket.create_connection(("127.0.0.1",port))
        c.sendall(b"GET /_/events HTTP/1.1\r\nHost: t\r\n\r\n")
        b=b""
        while b"\r\n\r\n" not in b:
            d=c.recv(4096)
            if not d: break
            b+=d
        k = "ok" if b.startswith(b"HTTP/1.1 200") else "503" if b" 503 " in b[:20] else "other"
        with lock: res[k]+=1
        c.close()
ts=[threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(res)
time.sleep(0.5)
c=socket.create_connection(("127.0.0.1",port)); c.sendall(b"GET /_/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
m=b""
while True:
    d=c.recv(65536)
    if not d: break
    m+=d
print([l for l in m.decode().splitlines() if l.startswith("fivetuple_event_subscribers") or l.startswith("fivetuple_connections_open")])
srv.terminate()
