#!/usr/bin/env python3
"""Sends hostile HTTP/2 to the relay's public port, one case per connection, and reports what happened.

Usage: python3 h2_client.py HOST PORT CAFILE RESULTS.json CASE...
Each case opens its own TLS connection (ALPN h2) to app.localhost (or nobody.localhost for "unrouted-body").
RESULTS.json maps each case to {"status": the first response status or null, "reset": the RST_STREAM error
code the relay sent or null, "goaway": the GOAWAY error code or null, "closed": whether the relay closed the
connection, "seconds": how long until the case's outcome, "refused": streams refused, "served": responses}.
Case "bystander" is special: a connection opened first and used again after all other cases; its result
says whether it still gets answers (status 200).
"""

import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

host, port, cafile, results_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
names = sys.argv[5:]


class Connection:
    def __init__(self, server_name="app.localhost", settings=None):
        raw = socket.create_connection((host, port), timeout=10)
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(["h2"])
        self.socket = context.wrap_socket(raw, server_hostname=server_name)
        assert self.socket.selected_alpn_protocol() == "h2"
        self.authority = server_name
        config = h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.flush()
        self.status, self.reset, self.goaway, self.closed = {}, {}, None, False
        self.ended = set()
        self.acknowledge = True

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            try:
                self.socket.sendall(data)
            except OSError:
                self.closed = True

    def request(self, method, path, end_stream=True, extra=()):
        stream = self.h2.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path)] + list(extra)
        self.h2.send_headers(stream, headers, end_stream=end_stream)
        self.flush()
        return stream

    def pump(self, until, timeout):
        """Reads events until until(self) is true, the connection closes, or timeout passes."""
        deadline = time.monotonic() + timeout
        while not until(self) and not self.closed and time.monotonic() < deadline:
            self.socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.socket.recv(65536)
            except socket.timeout:
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.h2.receive_data(data)
            except Exception:
                self.closed = True
                break
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    self.status[event.stream_id] = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.StreamReset):
                    self.reset[event.stream_id] = int(event.error_code)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended.add(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = int(event.error_code)
                elif isinstance(event, h2.events.DataReceived) and self.acknowledge:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.flush()

    def raw(self, frames):
        try:
            self.socket.sendall(b"".join(frame.serialize() for frame in frames))
        except OSError:
            self.closed = True

    def result(self, started, stream=None):
        return {
            "status": self.status.get(stream) if stream else None,
            "reset": self.reset.get(stream) if stream else None,
            "goaway": self.goaway,
            "closed": self.closed,
            "seconds": round(time.monotonic() - started, 2),
            "refused": sum(1 for code in self.reset.values() if code == 7),
            "served": len(self.status),
        }


def outcome(stream):
    return lambda c: stream in c.status and stream in c.ended or stream in c.reset or c.goaway is not None


def case_connect():
    c, started = Connection(), time.monotonic()
    stream = c.h2.get_next_available_stream_id()
    c.h2.send_headers(stream, [(":method", "CONNECT"), (":authority", "evil.example:443")], end_stream=False)
    c.flush()
    c.pump(outcome(stream), 5)
    return c.result(started, stream)


def case_host_mismatch():
    c, started = Connection(), time.monotonic()
    stream = c.request("GET", "/smuggled", extra=[("host", "evil.example")])
    c.pump(outcome(stream), 5)
    return c.result(started, stream)


def case_body_stall():
    # HEADERS without END_STREAM and no DATA: the relay must not wait past its body-read timeout.
    c, started = Connection(), time.monotonic()
    stream = c.request("POST", "/stalled-h2", end_stream=False, extra=[("content-length", "100")])
    c.pump(outcome(stream), 15)
    return c.result(started, stream)


def case_unrouted_body():
    c, started = Connection("nobody.localhost"), time.monotonic()
    stream = c.request("POST", "/x", end_stream=False, extra=[("content-length", "100")])
    c.pump(lambda c: stream in c.status, 10)
    return c.result(started, stream)


def case_window_zero():
    # Reads nothing: initial window 0 and no WINDOW_UPDATE. The stream must be reset after the send timeout.
    c, started = Connection(settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}), time.monotonic()
    c.acknowledge = False
    c.pump(lambda c: False, 0.5)  # let the settings be acknowledged
    stream = c.request("GET", "/big")
    c.pump(lambda c: stream in c.reset or c.goaway is not None, 20)
    return c.result(started, stream)


def case_idle_streams():
    # As many streams as the relay allows (it says 128), none sending its body: each is ended by the
    # body-read timeout, and the connection then serves requests again.
    c, started = Connection(), time.monotonic()
    c.pump(lambda c: c.h2.remote_settings.max_concurrent_streams < 1000, 5)
    limit = c.h2.remote_settings.max_concurrent_streams
    streams = [c.request("POST", f"/idle-{index}", end_stream=False, extra=[("content-length", "10")]) for index in range(limit)]
    c.pump(lambda c: all(s in c.reset or s in c.ended for s in streams), 20)
    result = c.result(started)
    result["ended"] = sum(1 for s in streams if s in c.reset or s in c.ended)
    result["limit"] = limit
    after = c.request("GET", "/after-idle")
    c.pump(outcome(after), 10)
    result["status"] = c.status.get(after)
    return result


def case_over_stream_limit():
    # A client that ignores the advertised limit breaks the protocol: its connection ends, nobody else's.
    c, started = Connection(), time.monotonic()
    c.pump(lambda c: c.h2.remote_settings.max_concurrent_streams < 1000, 5)
    c.h2.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = [100000]
    for index in range(300):
        c.request("POST", f"/over-{index}", end_stream=False, extra=[("content-length", "10")])
    c.pump(lambda c: c.goaway is not None, 10)
    return c.result(started)


def case_rapid_reset():
    c, started = Connection(), time.monotonic()
    for index in range(1000):
        stream = c.request("GET", f"/reset-{index}")
        c.h2.reset_stream(stream)
        c.flush()
        if c.closed:
            break
    c.pump(lambda c: c.goaway is not None, 10)
    return c.result(started)


def case_continuation_flood():
    c, started = Connection(), time.monotonic()
    block = Encoder().encode([(":method", "GET"), (":scheme", "https"), (":authority", "app.localhost"), (":path", "/flood")])
    frames = [HeadersFrame(1, data=block)]  # no END_HEADERS
    frames += [ContinuationFrame(1, data=Encoder().encode([("x-flood", "a" * 16)])) for _ in range(10000)]
    c.raw(frames)
    c.pump(lambda c: c.goaway is not None, 10)
    return c.result(started)


def case_ping_flood():
    c, started = Connection(), time.monotonic()
    c.raw([PingFrame(0, opaque_data=index.to_bytes(8, "big")) for index in range(20000)])
    c.pump(lambda c: c.goaway is not None, 10)
    return c.result(started)


def case_settings_flood():
    c, started = Connection(), time.monotonic()
    c.raw([SettingsFrame(0, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100}) for _ in range(20000)])
    c.pump(lambda c: c.goaway is not None, 10)
    return c.result(started)


cases = {
    "connect": case_connect, "host-mismatch": case_host_mismatch, "body-stall": case_body_stall,
    "unrouted-body": case_unrouted_body, "window-zero": case_window_zero, "idle-streams": case_idle_streams,
    "over-stream-limit": case_over_stream_limit, "rapid-reset": case_rapid_reset, "continuation-flood": case_continuation_flood, "ping-flood": case_ping_flood,
    "settings-flood": case_settings_flood,
}

results = {}
bystander = Connection() if "bystander" in names else None
if bystander:
    first = bystander.request("GET", "/bystander-before")
    bystander.pump(outcome(first), 10)
for name in names:
    if name != "bystander":
        results[name] = cases[name]()
if bystander:
    started = time.monotonic()
    stream = bystander.request("GET", "/bystander-after")
    bystander.pump(outcome(stream), 10)
    results["bystander"] = bystander.result(started, stream)
    results["bystander"]["before"] = bystander.status.get(first)
json.dump(results, open(results_file, "w"), indent=1)
print("done", flush=True)
