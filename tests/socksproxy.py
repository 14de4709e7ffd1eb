"""A SOCKS5 proxy for tests: pproxy's server, started without uvloop.

pproxy installs uvloop when it can import it and then asks for the current event loop, which
uvloop's policy refuses on Python 3.11+; hiding uvloop from it runs it on asyncio's own loop.

    python -m tests.socksproxy -l socks5://127.0.0.1:PORT#user:password -v
"""

from __future__ import annotations

import asyncio
import sys


def main() -> None:
    sys.modules["uvloop"] = None  # type: ignore[assignment]  # (makes `import uvloop` fail)
    asyncio.set_event_loop(asyncio.new_event_loop())
    import pproxy.server  # type: ignore[import-untyped]

    sys.argv = ["pproxy", *sys.argv[1:]]
    pproxy.server.main()


if __name__ == "__main__":
    main()
