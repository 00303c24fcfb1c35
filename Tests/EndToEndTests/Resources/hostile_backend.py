#!/usr/bin/env python3
"""A backend that breaks HTTP's framing the ways a hostile or broken one does, for the connector's tests.

Usage: python3 hostile_backend.py PORT LOGFILE
Keeps connections alive and appends "METHOD PATH connection=N" to LOGFILE for each request it reads
(N counts connections from 1). Answers by path:
  /extra-length   200, Content-Length: 5, then 11 body bytes (bytes past the response's end)
  /extra-204      204 followed by a body
  /silent         200, Content-Length: 100, 10 bytes, then silence until the peer closes
  /drip/S         200, Content-Length: 100, one byte every S seconds
  /many-headers   200 with 10,000 short header fields (60 KB: within HTTP/1.1 decoders' limits, 340 KB as
                  HTTP/2 counts them, over the tunnel's 256 KiB)
  /huge-head      200 with 200 KB of header fields (past the HTTP/1.1 decoder's limit)
  /cut            200, Content-Length: 1000, 100 bytes, then the connection closes
  anything else   200 "ok METHOD PATH" (after reading a Content-Length body)
Prints "listening" when ready.
"""

import itertools
import socketserver
import sys
import threading
import time

LOG = sys.argv[2]
COUNTER = itertools.count(1)
LOCK = threading.Lock()


def record(line):
    with LOCK, open(LOG, "a") as log:
        log.write(line + "\n")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        connection = next(COUNTER)
        while True:
            request_line = self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")
            if not request_line:
                return
            length = 0
            while True:
                line = self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                self.rfile.read(length)
            method, path = request_line.split(" ")[:2]
            record(f"{method} {path} connection={connection}")
            if not self.answer(method, path):
                return

    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def answer(self, method, path):
        """Writes the answer; False when the connection is to close."""
        if path == "/extra-length":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world")
        elif path == "/extra-204":
            self.send(b"HTTP/1.1 204 No Content\r\n\r\nan unexpected body")
        elif path == "/silent":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            self.rfile.read(1)  # until the peer closes
            return False
        elif path.startswith("/drip/"):
            pause = float(path.split("/")[2])
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            try:
                for _ in range(100):
                    self.send(b"x")
                    time.sleep(pause)
            except OSError:
                return False
        elif path == "/many-headers":
            self.send(b"HTTP/1.1 200 OK\r\n" + b"h: v\r\n" * 10000 + b"Content-Length: 2\r\n\r\nok")
        elif path == "/huge-head":
            fields = b"".join(b"x-field-%05d: value\r\n" % i for i in range(10000))
            self.send(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")
        elif path == "/cut":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
            return False
        else:
            body = f"ok {method} {path}".encode()
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return True


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("listening", flush=True)
    server.serve_forever()
