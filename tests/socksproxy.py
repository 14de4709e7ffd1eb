"""A SOCKS5 proxy for tests: pproxy's server, started without uvloop.

pproxy installs uvloop when it can import it and then asks for the current event loop, which
uvloop's policy refuses on Python 3.11+; hiding uvloop from it runs it on asyncio's own loop.
And pproxy closes a connection whose credentials are wrong without the RFC 1929 failure reply
(status != 0) that SOCKS5 servers send; the launcher adds it, so clients can tell wrong
credentials from a proxy that broke.

    python -m tests.socksproxy -l socks5://127.0.0.1:PORT#user:password -v
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


def main() -> None:
    sys.modules["uvloop"] = None  # type: ignore[assignment]  # (makes `import uvloop` fail)
    asyncio.set_event_loop(asyncio.new_event_loop())
    import pproxy.proto
    import pproxy.server

    original = pproxy.proto.Socks5.accept

    async def accept(self: Any, reader: Any, user: Any, writer: Any, *args: Any, **kw: Any) -> Any:
        try:
            return await original(self, reader, user, writer, *args, **kw)
        except Exception as exc:
            if str(exc).startswith("Unauthorized SOCKS b"):  # (after the user/password read)
                writer.write(b"\x01\x01")  # RFC 1929: authentication failed
            raise

    pproxy.proto.Socks5.accept = accept
    sys.argv = ["pproxy", *sys.argv[1:]]
    pproxy.server.main()


if __name__ == "__main__":
    main()
