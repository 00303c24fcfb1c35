#!/usr/bin/env python3
"""A plain-HTTP backend that records exactly what reaches it, for the adversarial tests.

Usage: python3 recording_backend.py PORT LOGFILE
Appends one JSON line per request to LOGFILE: the request line, the header lines as received, the body's
length and any chunked trailer lines. Answers 200 with that JSON as the body, or, to any request with an
Upgrade header, "101 Switching Protocols" (as a careless backend would) and then echoes raw bytes; a path
/big gets 2 MiB instead, /big/N N MiB. Prints
"listening" when ready. Framing is read strictly enough for well-formed requests only: what the relay lets
through must be well-formed.
"""

import json
import socketserver
import sys


def read_line(stream):
    line = stream.readline(65537)
    return line.decode("latin-1").rstrip("\r\n")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            request_line = read_line(self.rfile)
            if not request_line:
                return
            headers = []
            while True:
                line = read_line(self.rfile)
                if line == "":
                    break
                headers.append(line)
            fields = {}
            for line in headers:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip().lower(), []).append(value.strip())
            body_length, trailers = 0, []
            if "chunked" in ",".join(fields.get("transfer-encoding", [])).lower():
                while True:
                    size = int(read_line(self.rfile).split(";")[0], 16)
                    if size == 0:
                        break
                    body_length += len(self.rfile.read(size))
                    self.rfile.read(2)
                while True:
                    line = read_line(self.rfile)
                    if line == "":
                        break
                    trailers.append(line)
            elif "content-length" in fields:
                body_length = len(self.rfile.read(int(fields["content-length"][0])))
            record = {"line": request_line, "headers": headers, "body_length": body_length, "trailers": trailers}
            with open(sys.argv[2], "a") as log:
                log.write(json.dumps(record) + "\n")
            if "upgrade" in fields:
                self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + fields["upgrade"][0].encode() + b"\r\n\r\n")
                self.wfile.flush()
                while True:
                    data = self.request.recv(65536)
                    if not data:
                        return
                    with open(sys.argv[2], "a") as log:
                        log.write(json.dumps({"raw": data.decode("latin-1")}) + "\n")
                    self.request.sendall(data)
            body = (json.dumps(record) + "\n").encode()
            target = request_line.split(" ")[1]
            if target.startswith("/big"):
                # /big: 2 MiB; /big/N: N MiB.
                size = target[len("/big/"):]
                body = b"b" * ((int(size) if size.isdigit() else 2) << 20)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
server.serve_forever()
