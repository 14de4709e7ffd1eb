"""The embedded store's private server: data kept, a leftover stopped, one owner, long paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.private_server import CONFIG, PIDFILE, find_binary, private_server
from common.settings import EmbeddedSettings
from common.store import open_store

SETTINGS = EmbeddedSettings()


async def _incr(url: str) -> int:
    redis = await open_store(url)
    try:
        return int(await redis.incr("n"))
    finally:
        await redis.aclose()


async def test_data_outlives_the_server_and_fresh_deletes_it(tmp_path: Path) -> None:
    async with private_server(tmp_path, SETTINGS) as url:
        assert url == f"unix://{tmp_path}/valkey.sock"
        assert await _incr(url) == 1
    async with private_server(tmp_path, SETTINGS) as url:
        assert await _incr(url) == 2
    async with private_server(tmp_path, SETTINGS, fresh=True) as url:
        assert await _incr(url) == 1


async def test_a_server_left_behind_is_stopped_and_its_data_kept(tmp_path: Path) -> None:
    async with private_server(tmp_path, SETTINGS) as url:
        await _incr(url)
    # a server on the same config whose owner is gone (no parent-death signal, as on macOS)
    leftover = await asyncio.create_subprocess_exec(
        str(find_binary(None)),
        str(tmp_path / CONFIG),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # until it has written its pidfile
            if _pidfile(tmp_path) == leftover.pid:
                break
            await asyncio.sleep(0.05)
        async with private_server(tmp_path, SETTINGS) as url:
            assert _exited(leftover.pid)  # stopped before the new one started
            assert _pidfile(tmp_path) != leftover.pid
            assert await _incr(url) == 2
    finally:
        if leftover.returncode is None:
            leftover.kill()
        await leftover.wait()


def _pidfile(data: Path) -> int | None:
    try:
        return int((data / PIDFILE).read_text())
    except (OSError, ValueError):
        return None


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (this test process is its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_one_owner_at_a_time(tmp_path: Path) -> None:
    async with private_server(tmp_path, SETTINGS):
        with pytest.raises(ConfigError, match="another distcrawl process is using the store"):
            async with private_server(tmp_path, SETTINGS):
                pass


async def test_a_path_too_long_for_a_socket_uses_a_loopback_port(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 110)
    async with private_server(deep, SETTINGS) as url:
        assert url.startswith("redis://127.0.0.1:")
        assert await _incr(url) == 1
