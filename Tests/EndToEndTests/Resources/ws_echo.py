#!/usr/bin/env python3
"""WebSocket echo server for the end-to-end tests.

Usage: python3 ws_echo.py PORT

Listens on 127.0.0.1:PORT, echoes every text or binary message back unchanged, and prints "listening"
once the socket is bound. Needs the `websockets` package (scripts/setup-test-deps.sh installs it).
"""

import asyncio
import signal
import sys

try:
    from websockets.asyncio.server import serve
except ImportError:  # websockets < 13
    from websockets import serve


async def echo(connection):
    async for message in connection:
        await connection.send(message)


async def main(port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No size limit: tests send large frames on purpose.
    async with serve(echo, "127.0.0.1", port, max_size=None):
        print("listening", flush=True)
        await stop


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: ws_echo.py PORT")
    asyncio.run(main(int(sys.argv[1])))
