#!/usr/bin/env python3
"""WebSocket client for the end-to-end tests.

Usage: python3 ws_client.py URL CAFILE MESSAGE...

Connects to URL (ws:// or wss://; CAFILE is the CA to trust for wss://, or "-" for none), sends each
MESSAGE in turn and checks that the echo equals what was sent. Prints "ok N" (N = messages echoed) and
exits 0; on any failure prints what went wrong to stderr and exits 1.
"""

import asyncio
import ssl
import sys
from urllib.parse import urlsplit

try:
    from websockets.asyncio.client import connect
except ImportError:  # websockets < 13
    from websockets import connect


async def main(url, cafile, messages):
    context = None
    if url.startswith("wss://"):
        context = ssl.create_default_context(cafile=None if cafile in ("", "-") else cafile)
    # Like curl and browsers, treat *.localhost as loopback (RFC 6761); keep the name for SNI, Host and checks.
    extra = {}
    parsed = urlsplit(url)
    if parsed.hostname and parsed.hostname.endswith(".localhost"):
        extra = {"host": "127.0.0.1", "port": parsed.port or (443 if parsed.scheme == "wss" else 80)}
        if context is not None:
            extra["server_hostname"] = parsed.hostname
    async with connect(url, ssl=context, max_size=None, open_timeout=10, **extra) as connection:
        for index, message in enumerate(messages, start=1):
            await connection.send(message)
            reply = await asyncio.wait_for(connection.recv(), timeout=10)
            if reply != message:
                shown = reply if len(reply) <= 80 else reply[:80] + "..."
                raise RuntimeError(f"message {index}: sent {message[:80]!r}, echo was {shown!r}")
    print(f"ok {len(messages)}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: ws_client.py URL CAFILE MESSAGE...")
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
    except Exception as error:  # noqa: BLE001 - report every failure the same way
        print(f"ws_client: {sys.argv[1]}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
