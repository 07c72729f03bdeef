#!/usr/bin/env python3
"""Memory per idle connection: 15,000 connections, each answered once.

usage: idle.py BIN
"""
import subprocess, socket, time, sys, resource
resource.setrlimit(resource.RLIMIT_NOFILE,(20000,20000))
srv = subprocess.Popen([sys.argv[1],"serve","--listen","127.0.0.1:0","--quiet","--max-conns","19000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
port = int(srv.stdout.readline().decode().split(":")[-1])
def rss(): return int(open(f"/proc/{srv.pid}/status").read().split("VmRSS:")[1].split()[0])
# warm: one request
c=socket.create_connection(("127.0.0.1",port)); c.sendall(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n"); c.recv(1000)
time.sleep(0.3); base=rss()
held=[]
for i in range(15000):
    s=socket.create_connection(("127.0.0.1",port)); held.append(s)
for s in held[:15000]:
    s.sendall(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
for s in held: s.recv(1000)
time.sleep(1); r=rss()
print("per idle connection (answered once): %.0f B" % ((r-base)*1024/15000))
srv.terminate()
