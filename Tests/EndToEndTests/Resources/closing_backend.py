#!/usr/bin/env python3
"""An HTTP/1.1 backend that answers the first request on each connection with keep-alive, then closes
the connection on the second request without answering: the race of a backend closing an idle
keep-alive connection just as the proxy reuses it, made deterministic.

Usage: python3 closing_backend.py PORT      (prints "listening" when ready)
"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.served = getattr(self, "served", 0) + 1
        if self.served > 1:
            self.close_connection = True
            return
        body = b"fresh connection answer\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
server.serve_forever()
