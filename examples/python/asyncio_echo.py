#!/usr/bin/env python3
"""asyncio_echo.py - the reference for the Python performance comparison: a
stdlib asyncio Protocol echo server with the same command line and ready
line as echo_server.py.

    asyncio_echo.py [--host H] [--port P] [--workers N] [--mode push]

asyncio runs one event loop on one thread, so --workers is accepted for
the same command line and ignored. Pack mode is not implemented here.
"""

import argparse
import asyncio
import signal
import sys


class Echo(asyncio.Protocol):
    # asyncio sets TCP_NODELAY on TCP transports itself, as hpsock does.
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(host, port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, reuse_address=True, backlog=1024)
    addr = server.sockets[0].getsockname()
    print("listening on %s:%d" % (addr[0], addr[1]), flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


def main(argv=None):
    ap = argparse.ArgumentParser(description="asyncio echo server (reference)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="ignored: asyncio is one thread")
    ap.add_argument("--mode", choices=("push",), default="push")
    args = ap.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
