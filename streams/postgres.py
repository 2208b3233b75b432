"""A private PostgreSQL cluster in a directory of its own: the embedded broker's durable log.

    with EmbeddedPostgres(run_dir / "postgres", init_sql=TANSU_SCHEMA) as pg:
        pg.url        # postgres://tansu@127.0.0.1:<port>/tansu, what Tansu's --storage-engine takes

`directory/data` is the cluster (created by `initdb` on the first start only) and
`directory/postgres.log` its server log. The data outlives the server: stop it, start it
again on the same directory, and everything committed is there. The server listens on one
loopback address and a free port, has no unix socket, and trusts every connection (loopback
only, so only this machine's users reach it). Debian's binaries (`apt-get install postgresql`)
are found on PATH or under /usr/lib/postgresql/<version>/bin.

PostgreSQL refuses to run as root. As root (containers, CI) its server commands run in a user
namespace where the `postgres` (else `nobody`) user's uid maps onto root (`unshare --user`):
PostgreSQL sees an unprivileged owner, and the files stay root's, so nothing needs a chown.

The server is a daemon (`pg_ctl start`): a process killed before `stop()` leaves it running;
the next `start()` on the same directory stops it first.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from streams.broker import free_port, log_tail

log = logging.getLogger(__name__)

PG_ROOT = Path("/usr/lib/postgresql")
TANSU_SCHEMA = Path(__file__).with_name("tansu_postgres.sql")
"""Tansu's tables: its postgres engine expects them and does not create them."""
INSTALL_HINT = "apt-get install postgresql (or set streams.embedded_storage=memory)"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (binaries missing, or no way to run them unprivileged)."""


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def pg_bin_dir() -> Path:
    """The directory of PostgreSQL's server binaries: initdb's on PATH, else the newest
    /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        (d for d in PG_ROOT.glob("*/bin") if (d / "initdb").is_file()), key=lambda d: _version_key(d.parent.name)
    )
    if not found:
        raise PostgresUnavailable(f"PostgreSQL's initdb is neither on PATH nor under {PG_ROOT}/*/bin: {INSTALL_HINT}")
    return found[-1]


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` as it is; as root, wrapped to run as an unprivileged uid mapped onto root."""
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PostgresUnavailable(
            "PostgreSQL refuses to run as root, and `unshare` (util-linux) is missing to run it as another uid: "
            "apt-get install util-linux, or run as an unprivileged user"
        )
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = pwd.getpwnam("nobody")
    return [unshare, "--user", f"--map-user={user.pw_uid}", f"--map-group={user.pw_gid}", *argv]


class EmbeddedPostgres:
    """A PostgreSQL server over `directory/data`; use as a context manager or start()/stop()."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "tansu",
        database: str = "tansu",
        init_sql: Path | None = None,
    ) -> None:
        """`init_sql`: applied on every start, so it must be idempotent (Tansu's schema is)."""
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"EmbeddedPostgres host ({host}) must be a loopback address: it trusts every connection")
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_port(host)
        self.user = user
        self.database = database
        self.init_sql = init_sql
        self._running = False

    @functools.cached_property
    def bin(self) -> Path:
        """PostgreSQL's binaries, looked up when first needed (raises PostgresUnavailable)."""
        return pg_bin_dir()

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def start(self, timeout_s: int = 30) -> EmbeddedPostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.initialized:
            self._initdb()
        elif self._server_alive():
            log.warning("a PostgreSQL from an earlier process still serves %s; stopping it first", self.data_dir)
            self._pg_ctl("stop", "-m", "fast", "-t", str(timeout_s))
        options = f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories=''"
        self._pg_ctl("start", "-t", str(timeout_s), "-l", str(self.log_path), "-o", options)
        self._running = True
        if not self.query(f"select 1 from pg_database where datname = '{self.database}'", database="postgres"):
            self.query(f'create database "{self.database}"', database="postgres")
        if self.init_sql is not None:
            self._psql(["-f", str(self.init_sql)], self.database)
        return self

    def stop(self, timeout_s: int = 30) -> None:
        """Fast shutdown: open transactions roll back, everything committed is kept."""
        if self._running:
            self._running = False
            self._pg_ctl("stop", "-m", "fast", "-t", str(timeout_s))

    def query(self, sql: str, database: str | None = None) -> str:
        """Run `sql` with psql; its output, unaligned and without headers."""
        return self._psql(["-tA", "-c", sql], database or self.database)

    def _initdb(self) -> None:
        """initdb into a scratch directory renamed into place, so a half-made cluster never counts."""
        scratch = self.directory / "data.init"
        shutil.rmtree(scratch, ignore_errors=True)
        argv = [str(self.bin / "initdb"), "-D", str(scratch), "-U", self.user, "--auth=trust"]
        self._run(unprivileged([*argv, "--encoding=UTF8", "--locale=C", "--no-instructions"]), "initdb")
        scratch.rename(self.data_dir)

    def _server_alive(self) -> bool:
        argv = unprivileged([str(self.bin / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run(unprivileged([str(self.bin / "pg_ctl"), action, "-w", "-D", str(self.data_dir), *args]), action)

    def _psql(self, args: list[str], database: str) -> str:
        argv = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port)]
        env = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
        return self._run([*argv, "-U", self.user, "-d", database, *args], "psql", env).strip()

    def _run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-2000:]
            raise RuntimeError(
                f"PostgreSQL {what} failed (exit {done.returncode}) for {self.data_dir}: {output}"
                f"\nserver log {self.log_path}:\n{log_tail(self.log_path)}"
            )
        return done.stdout

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
