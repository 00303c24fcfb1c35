#!/usr/bin/env python3
"""A compromised connector: it holds a real connector certificate and speaks the tunnel protocol, but never
answers a request, floods the relay with `refresh` and error reports, and writes forged log lines into them.

Usage: python3 rogue_connector.py HOST PORT CERT KEY RELAY_CA REPORT.json
Connects over mutual TLS (ALPN sallyport/1), serves HTTP/2 as the tunnel's server side, says hello, applies
the configuration the relay pushes, then sends 100 `refresh` messages and 100 error reports of 100 KB each.
Requests the relay sends are accepted and never answered. Prints "applied" once the configuration is
applied and "flooded" after the flood; writes REPORT.json ({"configs": configuration pushes received after
the flood began, "requests": request streams opened}) every second.
"""

import json
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events

host, port, cert, key, relay_ca, report_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
CONTROL = "/.sallyport/v1/control"

context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(relay_ca)
context.load_cert_chain(cert, key)
context.set_alpn_protocols(["sallyport/1"])
sock = context.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
connection = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8", validate_inbound_headers=False))
connection.initiate_connection()
sock.sendall(connection.data_to_send())


def frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


control, pending, outbox = None, b"", b""


def drain():
    """Sends what flow control allows of the control stream's queued bytes."""
    global outbox
    while outbox and control is not None:
        room = min(connection.local_flow_control_window(control), connection.max_outbound_frame_size)
        if room <= 0:
            break
        connection.send_data(control, outbox[:room])
        outbox = outbox[room:]
    sock.sendall(connection.data_to_send())



flooded, configs_after_flood, requests, printed_flooded = False, 0, 0, False
last_report = 0.0
while True:
    data = sock.recv(65536)
    if not data:
        break
    for event in connection.receive_data(data):
        if isinstance(event, h2.events.RequestReceived):
            path = dict(event.headers).get(":path")
            if path == CONTROL:
                control = event.stream_id
                connection.send_headers(control, [(":status", "200")])
                outbox += frame({"type": "hello", "hello": {
                    "protocolVersion": 3, "connector": "rogue\nlevel=critical forged=yes", "host": "rogue\u001b[31m", "software": "0"}})
            else:
                requests += 1  # accepted, never answered
        elif isinstance(event, h2.events.DataReceived):
            connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_id != control:
                continue
            pending += event.data
            while len(pending) >= 4 and len(pending) >= 4 + struct.unpack(">I", pending[:4])[0]:
                length = struct.unpack(">I", pending[:4])[0]
                message, pending = json.loads(pending[4:4 + length]), pending[4 + length:]
                if message["type"] != "config":
                    continue
                if flooded:
                    configs_after_flood += 1
                    continue
                outbox += frame({"type": "configApplied", "version": message["config"]["version"]})
                drain()
                print("applied", flush=True)
                flooded = True
                outbox += frame({"type": "refresh"}) * 100
                forged = "failed\nlevel=critical msg=forged-by-connector " + "x" * 100_000
                outbox += frame({"type": "error", "message": forged}) * 100
    drain()
    if flooded and not outbox and not printed_flooded:
        printed_flooded = True
        print("flooded", flush=True)
    if time.monotonic() - last_report > 1:
        last_report = time.monotonic()
        json.dump({"configs": configs_after_flood, "requests": requests}, open(report_file, "w"))
