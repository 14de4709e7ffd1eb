"""A fault-injecting TCP proxy for the chaos tests, one fault per listening address.

    python -m tests.faultproxy --upstream-port P --log FILE \\
        --listen 127.0.0.1=latency:0.05 --listen 127.0.0.2=reset:0.5 \\
        --listen 127.0.0.3=blackhole --listen 127.0.0.4=throttle:200

Every address listens on the same port (printed as ``ready <port>``) and forwards to the same
address on the upstream port, so a multi-host test site keeps its hosts. Faults:

- ``latency:S``    wait S seconds before forwarding each answer chunk
- ``reset:P``      with probability P (seeded), forward the request, pass the start of the
                   answer, then reset the connection (RST) mid-body
- ``blackhole``    accept and read the request, never answer (a half-open peer)
- ``throttle:BPS`` pass the answer at BPS bytes per second (a trickle)

One JSON line per request goes to FILE: time, address, fault, request path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from common.lifecycle import Shutdown


@dataclass(frozen=True)
class Fault:
    kind: str
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        kind, _, value = text.partition(":")
        if kind not in ("latency", "reset", "blackhole", "throttle", "none"):
            raise argparse.ArgumentTypeError(f"unknown fault {kind!r}")
        return cls(kind, float(value or 0))


class Proxy:
    def __init__(self, upstream_port: int, log: TextIO, seed: int) -> None:
        self.upstream_port = upstream_port
        self.log = log
        self.rng = random.Random(seed)

    def handler(
        self, address: str, fault: Fault
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._serve(address, fault, reader, writer)
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return handle

    async def _serve(
        self, address: str, fault: Fault, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:  # one request per loop turn (keep-alive)
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode(errors="replace") if b" " in head else "?"
            self.log.write(
                json.dumps({"t": time.time(), "addr": address, "fault": fault.kind, "path": path})
                + "\n"
            )
            if fault.kind == "blackhole":
                await asyncio.Event().wait()  # until the client gives up and closes
            up_reader, up_writer = await asyncio.open_connection(address, self.upstream_port)
            # One request per upstream connection: the answer ends when upstream closes.
            up_writer.write(
                head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                if b"connection:" not in head.lower()
                else head
            )
            await up_writer.drain()
            reset = fault.kind == "reset" and self.rng.random() < fault.value
            sent = 0
            try:
                while chunk := await up_reader.read(1024 if fault.kind == "throttle" else 65536):
                    if reset and sent > 0:
                        self._reset(writer)
                        return
                    if fault.kind == "latency":
                        await asyncio.sleep(fault.value)
                    if fault.kind == "throttle":
                        for i in range(0, len(chunk), 64):
                            writer.write(chunk[i : i + 64])
                            await writer.drain()
                            await asyncio.sleep(64 / fault.value)
                    else:
                        writer.write(chunk[: len(chunk) // 2] if reset else chunk)
                        await writer.drain()
                    sent += len(chunk)
                if reset:
                    self._reset(writer)
                    return
            finally:
                up_writer.close()
            return  # the upstream closed: close the client too (it reconnects)

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def _main(args: argparse.Namespace, log: TextIO) -> None:
    proxy = Proxy(args.upstream_port, log, args.seed)
    port = args.port
    servers = []
    for item in args.listen:
        address, _, spec = item.partition("=")
        server = await asyncio.start_server(
            proxy.handler(address, Fault.parse(spec)), address, port
        )
        port = server.sockets[0].getsockname()[1]
        servers.append(server)
    print(f"ready {port}", flush=True)
    shutdown = Shutdown()
    shutdown.install()
    await shutdown.stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--listen", action="append", required=True, metavar="ADDR=FAULT")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with Path(args.log).open("a", buffering=1) as log:
        asyncio.run(_main(args, log))


if __name__ == "__main__":
    main()
