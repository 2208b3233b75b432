"""Content-addressed blob store on `pyarrow.fs`: large payloads leave Kafka (claim check).

A blob's key is the sha256 of its bytes, so writing the same payload twice is a no-op and a
key can never point at different contents. Any URI that `pyarrow.fs.FileSystem.from_uri`
understands: the embedded store's `blobs` bucket (streams/objectstore.py) when the embedded
broker is durable, an `s3://bucket/prefix` reachable from every node in a cluster, or a local
directory for one machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs

from streams.broker import redacted
from streams.metrics import Phases


class BlobStore:
    def __init__(self, uri: str) -> None:
        if "://" not in uri:
            Path(uri).mkdir(parents=True, exist_ok=True)
            uri = Path(uri).resolve().as_uri()
        self.uri = uri
        self.shown = redacted(uri)
        """The URI with its secret (an S3 key's, in the userinfo) replaced by ***, for messages."""
        self._fs, self._root = pafs.FileSystem.from_uri(uri)
        self._fs.create_dir(self._root, recursive=True)
        self._atomic_puts = isinstance(self._fs, pafs.S3FileSystem)
        """An S3 PUT appears whole or not at all: no temporary object, no directories."""

    def _path(self, key: str) -> str:
        return f"{self._root}/{key[:2]}/{key}"

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if self._fs.get_file_info(path).type != pafs.FileType.NotFound:
            return key
        if self._atomic_puts:
            with self._fs.open_output_stream(path) as out:
                out.write(data)
        else:
            self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"  # concurrent writers of one key each write their own
            with self._fs.open_output_stream(tmp) as out:
                out.write(data)
            self._fs.move(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        try:
            with self._fs.open_input_stream(self._path(key)) as src:
                data = src.read()
        except FileNotFoundError:
            raise KeyError(f"blob {key} not found in {self.shown}") from None
        if hashlib.sha256(data).hexdigest() != key:
            raise ValueError(f"blob {key} in {self.shown} is corrupt (hash mismatch)")
        return data


class ClaimCheck:
    """Keeps payloads inline below `limit` bytes and in the blob store above it; the time of each
    blob read and write goes to the owning actor's `blob` phase once it sets `phases`."""

    def __init__(self, blobs: BlobStore, limit: int) -> None:
        self.blobs = blobs
        self.limit = limit
        self.phases: Phases | None = None

    def _put(self, data: bytes) -> str:
        with self.phases("blob") if self.phases else contextlib.nullcontext():
            return self.blobs.put(data)

    def _get(self, key: str) -> bytes:
        with self.phases("blob") if self.phases else contextlib.nullcontext():
            return self.blobs.get(key)

    def put_text(self, text: str) -> tuple[str, str]:
        """-> (inline text, "") or ("", blob key)."""
        data = text.encode("utf-8")
        return (text, "") if len(data) <= self.limit else ("", self._put(data))

    def get_text(self, inline: str, ref: str) -> str:
        return inline if not ref else self._get(ref).decode("utf-8")

    def put_ids(self, ids: list[int]) -> tuple[tuple[int, ...], str]:
        """-> (inline ids, "") or ((), blob key of the int32 array)."""
        if len(ids) * 4 <= self.limit:
            return tuple(ids), ""
        return (), self._put(np.asarray(ids, dtype=np.int32).tobytes())

    def get_ids(self, inline: tuple[int, ...], ref: str) -> list[int]:
        if not ref:
            return list(inline)
        return np.frombuffer(self._get(ref), dtype=np.int32).tolist()
