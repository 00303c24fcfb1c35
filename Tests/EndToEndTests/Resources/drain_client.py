#!/usr/bin/env python3
"""Connects over TCP, waits for a go-file, then does TLS and one request; reports how the server answered.

Usage: python3 drain_client.py HOST PORT SERVERNAME CAFILE GOFILE
Prints "connected" once the TCP connection is up. When GOFILE exists (the test creates it after the relay
began draining), completes the TLS handshake, sends `GET /` and prints the status line, "connection: close"
if the response said so, and "closed after S" when the server closed the connection (or "still open" after
10 s).
"""

import os
import socket
import ssl
import sys
import time

host, port, server_name, cafile, go_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

raw = socket.create_connection((host, port), timeout=30)
print("connected", flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(go_file):
    if time.monotonic() > deadline:
        print("no go-file", flush=True)
        sys.exit(1)
    time.sleep(0.05)

context = ssl.create_default_context(cafile=cafile)
context.set_alpn_protocols(["http/1.1"])
connection = context.wrap_socket(raw, server_hostname=server_name)
connection.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\n\r\n".encode())
connection.settimeout(10)
received = b""
start = time.monotonic()
closed = False
try:
    while True:
        data = connection.recv(65536)
        if not data:
            closed = True
            break
        received += data
except socket.timeout:
    pass
except (ssl.SSLError, ConnectionResetError, OSError):
    closed = True
head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
lines = head.split("\r\n")
print(f"status: {lines[0] if lines else ''}", flush=True)
if any(line.lower().replace(" ", "") == "connection:close" for line in lines[1:]):
    print("connection: close", flush=True)
print(f"closed after {time.monotonic() - start:.1f}" if closed else "still open", flush=True)
