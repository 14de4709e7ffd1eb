"""The local sites tests crawl: one port on several loopback addresses, even when the port the
first address got is taken on another (parallel test processes bind ports all the time)."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp import web

from distcrawl.demosite import DemoSite, SiteServer


class _Contested(SiteServer):
    """Its first try gets a port already taken on its second address."""

    def __init__(self, site: DemoSite, addresses: tuple[str, ...]) -> None:
        super().__init__(site, addresses)
        self.blockers: list[socket.socket] = []

    async def _listen(self, runner: web.AppRunner) -> None:
        if not self.blockers:
            with socket.create_server((self.addresses[0], 0)) as probe:
                port = probe.getsockname()[1]
            self.blockers.append(socket.create_server((self.addresses[1], port)))
            self.port = port
        await super()._listen(runner)


async def test_a_port_taken_on_another_address_is_given_up_for_a_free_one() -> None:
    server = _Contested(DemoSite(pages_per_host=3), ("127.0.0.1", "127.0.0.2"))
    try:
        hosts = await server.start()
        taken = server.blockers[0].getsockname()[1]
        assert server.port not in (0, taken)
        assert hosts == [f"127.0.0.1:{server.port}", f"127.0.0.2:{server.port}"]
        async with aiohttp.ClientSession() as session:
            for host in hosts:
                async with session.get(f"http://{host}/p/1.html") as resp:
                    assert resp.status == 200
    finally:
        await server.stop()
        for blocker in server.blockers:
            blocker.close()
