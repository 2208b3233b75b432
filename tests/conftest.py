"""Shared fixtures: a fresh embedded broker per test, a blob store, the tiny model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors.modeling import TinyModelConfig, build_tiny_policy
from streams.blobs import BlobStore, ClaimCheck
from streams.broker import EmbeddedBroker
from streams.kafka import StreamsConfig, ensure_topics


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[StreamsConfig]:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        config = StreamsConfig(
            bootstrap_servers=broker.bootstrap_servers, max_poll_interval_ms=6000, session_timeout_ms=6000
        )
        ensure_topics(config)
        yield config


@pytest.fixture
def claim(tmp_path: Path) -> ClaimCheck:
    return ClaimCheck(BlobStore(str(tmp_path / "blobs")), limit=1024)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return str(build_tiny_policy(path, TinyModelConfig(num_layers=2, hidden_size=64, intermediate_size=128)))


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Running:
    """Runs actors' `run(stop)` loops in threads for a test; stops and closes them after."""

    def __init__(self, *actors: object) -> None:
        self.actors = actors
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(a,), daemon=True) for a in actors]

    def _run(self, actor: object) -> None:
        try:
            actor.run(self.stop)  # type: ignore[attr-defined]
        except BaseException as exc:  # noqa: BLE001 - surfaced by check()
            self.errors.append(exc)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> Running:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        for a in self.actors:
            a.close()  # type: ignore[attr-defined]
        self.check()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.gpu` tests run where CUDA is visible and are skipped, with the reason, elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
