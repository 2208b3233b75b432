"""The embedded log: the Tansu broker and, for durable storage, the private S3 store under it.

    embedded = EmbeddedLog(streams.embedded_storage, run_dir).start()
    streams = dataclasses.replace(streams, bootstrap_servers=embedded.bootstrap_servers)
    ...
    embedded.stop()                                   # the broker, then the store

`streams.embedded_storage` says where the broker keeps its log:

- `durable` (the default): Tansu's `s3://` engine on a private SeaweedFS in `<run_dir>/store`
  (streams/objectstore.py). Records, topics and committed offsets outlive the broker and the
  store: either can be killed and restarted on its ports and the log is still there. The
  claim-check blobs live in the same store (`blob_uri()`).
- `memory`: Tansu's memory engine. Fastest; lost when the broker stops. Consumers that had
  read or committed past what a restarted broker holds stop with `LogLost` (streams/kafka.py).
- a storage URL (`memory://`, `s3://bucket/`, ...): given to Tansu as it is (an `s3://` URL
  reads the usual AWS_* variables from the environment).

`stop()` then `start()` on the same object restarts on the same ports and the same data;
`restart_dead()` restarts whichever part has exited.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from streams.broker import EmbeddedBroker, redacted, require_engine, storage_engine
from streams.objectstore import EmbeddedS3, weed_binary

MEMORY = "memory"
DURABLE = "durable"
MEMORY_URL = "memory://tansu/"
LOG_BUCKET = "tansu"
BLOB_BUCKET = "blobs"


def storage_setting_problem(setting: str) -> str | None:
    """Why `streams.embedded_storage` is not usable, or None when it is."""
    if setting in (MEMORY, DURABLE):
        return None
    try:
        storage_engine(setting)
    except ValueError as exc:
        return f"streams.embedded_storage ({redacted(setting)!r}) must be 'durable', 'memory' or a storage URL: {exc}"
    return None


def is_durable(url: str) -> bool:
    """Whether a broker on this storage URL keeps its log when it stops."""
    return not url.startswith("memory://")


class EmbeddedLog:
    """The embedded broker and the storage it needs; use as a context manager or start()/stop()."""

    def __init__(self, storage: str, run_dir: Path, *, host: str = "127.0.0.1") -> None:
        """`storage`: a `streams.embedded_storage` value; `run_dir` holds broker.log and, for
        `durable`, the store's directory store/."""
        problem = storage_setting_problem(storage)
        if problem:
            raise ValueError(problem)
        self.run_dir = Path(run_dir)
        self.store = (
            EmbeddedS3(self.run_dir / "store", host=host, buckets=(LOG_BUCKET, BLOB_BUCKET))
            if storage == DURABLE
            else None
        )
        url = {MEMORY: MEMORY_URL, DURABLE: f"s3://{LOG_BUCKET}/"}.get(storage, storage)
        self.broker = EmbeddedBroker(
            host=host,
            storage=url,
            log_path=self.run_dir / "broker.log",
            env=self.store.client_env() if self.store else None,
        )

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def storage_url(self) -> str:
        return self.broker.storage

    @property
    def durable(self) -> bool:
        return is_durable(self.storage_url)

    def blob_uri(self) -> str | None:
        """Where the claim-check blobs go when this log has a store of its own, else None."""
        return self.store.blob_uri(BLOB_BUCKET) if self.store else None

    def start(self) -> EmbeddedLog:
        """Check the broker has the engine (and the store its binary) first, so nothing starts
        when either cannot."""
        require_engine(self.storage_url)
        if self.store is not None:
            weed_binary()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.store is not None:
            self.store.start()
        try:
            self.broker.start()
        except BaseException:
            if self.store is not None:
                self.store.stop()
            raise
        return self

    def dead_parts(self) -> list[str]:
        """The parts started and not stopped on purpose that are not running (exited, or a
        restart that failed): 'store', 'broker'."""
        dead = []
        if self.store is not None and self.store.wanted and not self.store.running:
            dead.append("store")
        if self.broker.wanted and not self.broker.running:
            dead.append("broker")
        return dead

    def restart_dead(self) -> list[str]:
        """Restart the parts that exited, the store first (the broker needs it); the names."""
        dead = self.dead_parts()
        if "store" in dead:
            self.store.stop()
            self.store.start()
        if "broker" in dead:
            self.broker.stop()
            self.broker.start()
        return dead

    def stop(self) -> None:
        try:
            self.broker.stop()
        finally:
            if self.store is not None:
                self.store.stop()

    def describe(self) -> str:
        """One line for logs: where the broker listens and where its log lives."""
        kept = "kept across restarts" if self.durable else "lost when the broker stops"
        where = f" on SeaweedFS at {self.store.endpoint} ({self.store.directory})" if self.store else ""
        return f"embedded broker on {self.bootstrap_servers}, storage {redacted(self.storage_url)}{where} ({kept})"

    def __enter__(self) -> EmbeddedLog:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
