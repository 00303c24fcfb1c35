#!/usr/bin/env python3
"""Opens a TLS connection, optionally sends a partial request head, and reports when the server closes.

Usage: python3 slow_client.py HOST PORT SERVERNAME CAFILE [PARTIAL_HEAD | --no-tls]
Prints "closed after S" (seconds, one decimal) when the server closes the connection, or "still open"
after 30 s. Used to check the relay's idle and header-read timeouts, and with --no-tls (a TCP client that
never starts its TLS handshake) the handshake timeout.
"""

import socket
import ssl
import sys
import time

host, port, server_name, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
no_tls = len(sys.argv) > 5 and sys.argv[5] == "--no-tls"
partial = sys.argv[5].encode().decode("unicode_escape").encode() if len(sys.argv) > 5 and not no_tls else b""

raw = socket.create_connection((host, port), timeout=30)
start = time.monotonic()
if no_tls:
    connection = raw
else:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    connection = context.wrap_socket(raw, server_hostname=server_name)
    start = time.monotonic()
if partial:
    connection.sendall(partial)
try:
    while True:
        data = connection.recv(4096)
        if not data:
            break
except (ssl.SSLError, ConnectionResetError, OSError):
    pass
except socket.timeout:
    print("still open", flush=True)
    sys.exit(0)
print(f"closed after {time.monotonic() - start:.1f}", flush=True)
