"""A Negotiate backend written with python3-gssapi (Debian's python3-gssapi), as Python services do it.

GET /whoami needs `Authorization: Negotiate <token>` (SPNEGO or a raw Kerberos AP-REQ, whichever the
client sends); it answers the user the ticket names in the test bed's key=value lines, with the context's
reply token in WWW-Authenticate. The keytab comes from KRB5_KTNAME, the realm from KRB5_CONFIG.

Usage: python3 gssapi_backend.py PORT
"""
import base64
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gssapi


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("gssapi-backend: " + (fmt % args) + "\n")

    def answer(self, status, body, headers=()):
        data = body.encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            return self.answer(200, "ok\n")
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("negotiate "):
            return self.answer(401, "authenticate\n", [("WWW-Authenticate", "Negotiate")])
        token = base64.b64decode(auth.split(" ", 1)[1])
        context = gssapi.SecurityContext(usage="accept", creds=gssapi.Credentials(usage="accept"))
        try:
            reply = context.step(token)
        except gssapi.exceptions.GSSError as error:
            return self.answer(401, "refused: %s\n" % error, [("WWW-Authenticate", "Negotiate")])
        if not context.complete:
            return self.answer(401, "incomplete\n", [("WWW-Authenticate", "Negotiate")])
        headers = [("WWW-Authenticate", "Negotiate " + base64.b64encode(reply).decode())] if reply else []
        user = str(context.initiator_name)
        return self.answer(200, "user=%s\nrequest_had_token=yes\nserver=python-gssapi\n" % user, headers)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()
