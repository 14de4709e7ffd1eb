"""The object-storage sink: one worker's records as JSONL objects in ``s3://bucket/prefix/<stream>/``.

Through aiobotocore (async botocore): credentials come from botocore's standard chain
(environment, shared config and credentials files, SSO, container and instance roles) and are
never read or printed here; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) points it at any
S3 API (MinIO, Ceph, moto in the tests). botocore retries (standard mode, 3 attempts) before a
call fails.

Each ``write`` is one PUT of a new object: an object is whole or absent (a reader never sees half
of one), and the call returns once S3 has it, so a page is settled only after its record is
stored. S3 cannot append, so a worker writes at most one object per ``s3_linger_s``: a write
that comes sooner waits, while the pages finishing meanwhile gather for the next one (the
committer batches them). A failed PUT fails this and every later write with an OutputError.

This is the one module that translates botocore's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from common.errors import OutputError
from common.logging import get_logger
from common.sinks import record_line, segment_name, whole_lines

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

    from common.settings import SinkSettings

__all__ = ["S3Writer", "read_objects"]

log = get_logger(__name__)

_CONFIG = AioConfig(
    connect_timeout=10,
    read_timeout=60,
    retries={"mode": "standard", "max_attempts": 3},
)
_READERS = 16  # objects fetched at once by export
_Errors = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err: dict[str, Any] = exc.response.get("Error", {})
        code, message = err.get("Code", "error"), err.get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[S3Client]:
    session = get_session()
    async with session.create_client("s3", config=_CONFIG) as client:
        yield client


def _dir(prefix: str, stream: str) -> str:
    return f"{prefix}/{stream}/" if prefix else f"{stream}/"


class S3Writer:
    def __init__(self, bucket: str, prefix: str, stream: str, settings: SinkSettings) -> None:
        self._bucket = bucket
        self._dir = _dir(prefix, stream)
        self._linger_s = settings.s3_linger_s
        self._tag = os.urandom(3).hex()
        self._seq = -1
        self._stack = contextlib.AsyncExitStack()
        self._s3: S3Client | None = None
        self._lock = asyncio.Lock()
        self._last_put = -float("inf")
        self.failure: OutputError | None = None
        self.records = 0
        self.objects: list[str] = []

    @property
    def where(self) -> str:
        return f"s3://{self._bucket}/{self._dir}"

    async def start(self) -> None:
        """Open the client and check the bucket answers (a missing bucket, refused
        credentials or an unreachable endpoint fail here, before any page)."""
        try:
            self._s3 = await self._stack.enter_async_context(_client())
            await self._s3.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("403", "AccessDenied"):  # (a writer may lack s3:ListBucket)
                return
            await self._stack.aclose()
            if code in ("404", "NoSuchBucket"):
                raise self._fail(exc, f"no bucket named {self._bucket!r} ({code})") from exc
            raise self._fail(exc) from exc
        except _Errors as exc:
            await self._stack.aclose()
            raise self._fail(exc) from exc

    async def write(self, records: Sequence[tuple[str, str]]) -> None:
        if self.failure is not None:
            raise self.failure
        if not records:
            return
        assert self._s3 is not None, "start() first"
        async with self._lock:
            wait = self._last_put + self._linger_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.failure is not None:
                raise self.failure
            now = time.time()
            body = b"".join(record_line(fp, record, now) for fp, record in records)
            self._seq += 1
            key = self._dir + segment_name(self._seq, self._tag, now=now)
            self._last_put = time.monotonic()
            try:
                await self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=body, ContentType="application/x-ndjson"
                )
            except _Errors as exc:
                raise self._fail(exc) from exc
        self.objects.append(key)
        self.records += len(records)

    async def aclose(self) -> None:
        async with self._lock:
            await self._stack.aclose()
            self._s3 = None

    def _fail(self, exc: BaseException, why: str = "") -> OutputError:
        if self.failure is None:
            why = why or _describe(exc)
            self.failure = OutputError(f"cannot write records to {self.where}: {why}")
            log.error("sink_failed", error=str(self.failure))
        return self.failure


async def read_objects(bucket: str, prefix: str, stream: str) -> AsyncIterator[bytes]:
    """Every whole line of every object of ``stream``, objects in key order."""
    where = f"s3://{bucket}/{_dir(prefix, stream)}"
    try:
        async with _client() as s3:
            keys: list[str] = []
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=_dir(prefix, stream)):
                keys += [obj["Key"] for obj in page.get("Contents", []) if "Key" in obj]
            keys.sort()
            gate = asyncio.Semaphore(_READERS)

            async def get(key: str) -> bytes:
                async with gate:
                    resp = await s3.get_object(Bucket=bucket, Key=key)
                    async with resp["Body"] as body:
                        data: bytes = await body.read()
                        return data

            bodies = await asyncio.gather(*(get(k) for k in keys))
    except _Errors as exc:
        raise OutputError(f"cannot read records in {where}: {_describe(exc)}") from exc
    for data in bodies:
        for line in whole_lines(data):
            yield line
