#!/usr/bin/env python3
"""Sends hostile HTTP/1.1 bytes over TLS, one case per connection, and reports what came back.

Usage: python3 raw_client.py HOST PORT CAFILE CASES.json RESULTS.json
CASES.json is a list of {"name", "server_name", "parts": [text, ...], "pause": seconds between parts,
"wait": seconds to wait for the server to close (default 5), "hold": connections to open first and keep
open during the case, "no_read": seconds to read nothing after sending, "rcvbuf": the socket's receive
buffer}; texts use \\r, \\n, \\x00 escapes as JSON
strings. RESULTS.json maps each name to {"statuses": [status codes of every response seen, in order],
"closed_after": seconds until the server closed (null: still open after "wait"), "text": the first 2000
characters received, "received_bytes", "refused": true when the server closed before TLS finished}.
"""

import json
import re
import socket
import ssl
import sys
import time

host, port, cafile, cases_file, results_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
cases = json.load(open(cases_file))
results = {}
context = ssl.create_default_context(cafile=cafile)
context.set_alpn_protocols(["http/1.1"])
held = []
for case in cases:
    # "hold": N connections opened (TLS done) and kept open while the case runs, to fill a connection limit.
    for _ in range(case.get("hold", 0)):
        kept = context.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=case["server_name"])
        held.append(kept)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if case.get("rcvbuf"):
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, case["rcvbuf"])
    raw.settimeout(10)
    raw.connect((host, port))
    start = time.monotonic()
    try:
        connection = context.wrap_socket(raw, server_hostname=case["server_name"])
    except (ssl.SSLError, OSError):
        results[case["name"]] = {"statuses": [], "closed_after": time.monotonic() - start, "text": "", "refused": True}
        for kept in held:
            kept.close()
        held = []
        continue
    received = b""
    closed_after = None
    try:
        for index, part in enumerate(case["parts"]):
            if index > 0:
                time.sleep(case.get("pause", 0))
            connection.sendall(part.encode("latin-1"))
        if case.get("no_read"):
            # A client that reads nothing for a while: the server must not wait for it forever.
            time.sleep(case["no_read"])
        connection.settimeout(case.get("wait", 5))
        start = time.monotonic()
        while True:
            data = connection.recv(65536)
            if not data:
                closed_after = time.monotonic() - start
                break
            received += data
    except socket.timeout:
        pass
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError):
        closed_after = time.monotonic() - start
    connection.close()
    for kept in held:
        kept.close()
    held = []
    text = received.decode("latin-1")
    # A status line starts the text or follows a line end (the recording backend's bodies end with one).
    statuses = [int(code) for code in re.findall(r"(?:^|\n)HTTP/1\.1 (\d{3}) ", text)]
    results[case["name"]] = {
        "statuses": statuses, "closed_after": closed_after, "text": text[:2000], "refused": False, "received_bytes": len(received),
    }
json.dump(results, open(results_file, "w"), indent=1)
print("done", flush=True)
