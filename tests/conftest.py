"""Shared fixtures: a fresh embedded broker per test, a blob store, the tiny model."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from actors.learner.actor import Learner
from actors.learner.config import LearnerConfig
from actors.learner.setup import HeldoutSpec
from actors.modeling import build_tiny_policy
from actors.sampling import SamplingSpec
from actors.settings import SECRET_ENV, TinyModelConfig, Transport
from actors.synthesis.actor import make_task
from actors.tasks import TaskType, compose_kv_retrieval, word_count
from actors.world import make_world
from schemas import ScoredRollout
from streams.blobs import BlobStore, ClaimCheck
from streams.broker import EmbeddedBroker
from streams.kafka import Producer, StreamsConfig
from streams.logs import ensure_topics


@pytest.fixture(autouse=True)
def run_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test process holds a run secret, as every actor does (the launcher gives it one):
    the collective weight path serves only requests signed with it."""
    monkeypatch.setenv(SECRET_ENV, "test-run-secret")
    return "test-run-secret"


def broker_streams(broker: EmbeddedBroker) -> StreamsConfig:
    """Streams settings for a test on `broker`, its topics created."""
    config = StreamsConfig(
        bootstrap_servers=broker.bootstrap_servers, max_poll_interval_ms=6000, session_timeout_ms=6000
    )
    ensure_topics(config)
    return config


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[StreamsConfig]:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        yield broker_streams(broker)


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


STARTS = {
    "broker": "an embedded broker (Tansu)",
    "ray": "a Ray cluster",
    "vllm": "a vLLM engine",
    "deepspeed": "DeepSpeed ranks",
    "gpu": "a CUDA device",
}
"""The markers that say what a test starts; a test with none of them is `unit` (starts nothing).
`pipeline` (the whole service) implies broker and ray."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from what a test starts: `broker` for a test on the `streams` fixture, broker and
    ray for `pipeline`, `unit` for the rest. `@pytest.mark.gpu` tests run where CUDA is
    visible and are skipped, with the reason, elsewhere."""
    import torch

    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "streams" in getattr(item, "fixturenames", ()):
            item.add_marker("broker")
        if "pipeline" in item.keywords:
            item.add_marker("broker")
            item.add_marker("ray")
        if not any(marker in item.keywords for marker in STARTS):
            item.add_marker("unit")
        if skip is not None and "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def starts_only_what_it_is_marked_for(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a broker, the service, a vLLM engine or DeepSpeed ranks without its
    marker fails at that start, so the unit tier provably starts nothing."""
    import sys

    marked = {marker.name for marker in request.node.iter_markers()}

    def refuse(what: str) -> Callable[..., Any]:
        def start(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                f"{request.node.nodeid} starts {STARTS[what]} but is not marked {what!r}: "
                f"add pytestmark = pytest.mark.{what} (a test on the `streams` fixture is marked broker)"
            )

        return start

    guards = {
        "broker": [("streams.broker", "EmbeddedBroker", "start")],
        "ray": [("ops.launcher", "Service", "start"), ("tests.service", "CliService", "start"), ("ray", None, "init")],
        "vllm": [("actors.vllm_engine", "VLLMEngine", "__init__")],
        "deepspeed": [
            ("actors.learner.ds_trainer", "DeepSpeedTrainer", "__init__"),
            ("torch.multiprocessing", None, "start_processes"),  # the ranks of a DeepSpeed test
        ],
    }
    for what, places in guards.items():
        if what in marked:
            continue
        for module, owner, name in places:
            if module in sys.modules:  # what no test module imported, no test can start this way
                target = sys.modules[module] if owner is None else getattr(sys.modules[module], owner)
                monkeypatch.setattr(target, name, refuse(what))


def send_tasks(streams: StreamsConfig, claim: ClaimCheck, n: int, seed: int = 0) -> None:
    """`n` kv-retrieval tasks on `tasks`, from worlds 1000·seed + 0..n−1 (16-token contexts)."""
    producer = Producer(streams, client_id="test-tasks")
    rng = random.Random(seed)
    for i in range(n):
        composed = compose_kv_retrieval(make_world(1000 * seed + i, 4).facts, rng, context_tokens=16)
        task = make_task(
            composed,
            collection=f"w{i}",
            doc_ids=("d",),
            claim=claim,
            synth_version=1,
            context_tokens=word_count(composed.context),
        )
        producer.send_records("tasks", [task], key=task.task_id.encode())
    producer.flush()
    producer.close()


def send_scored(streams: StreamsConfig, tokenizer, groups: int, group_size: int = 4) -> None:  # noqa: ANN001
    """A fixed recorded range of `scored`: random responses with made-up behaviour log-probs."""
    rng = random.Random(0)
    producer = Producer(streams, client_id="test-scored")
    words = [w for w in tokenizer.get_vocab() if w.isalpha()][:40]
    for g in range(groups):
        prompt = tokenizer(" ".join(rng.choice(words) for _ in range(12)))["input_ids"]
        rollouts = []
        for i in range(group_size):
            response = tokenizer(" ".join(rng.choice(words) for _ in range(3)))["input_ids"]
            rollouts.append(
                scored_rollout(
                    f"g{g}",
                    i,
                    group_size,
                    prompt,
                    response,
                    behaviour_logprobs=tuple(-rng.uniform(0.5, 4.0) for _ in response),
                    reward=float(rng.random() < 0.5),
                )
            )
        producer.send_records("scored", rollouts, key=b"one-partition")  # one order, every run
    producer.flush()
    producer.close()


def make_learner(
    streams: StreamsConfig,
    claim: ClaimCheck,
    model: str,
    run_dir: Path,
    *,
    name: str = "learner-t",
    run_id: str = "",
    **config: Any,
) -> Learner:
    """An RL-only learner on kv-retrieval (weights as files; a small held-out set at 16 tokens);
    `config` overrides LearnerConfig fields."""
    settings = {"sft_steps": 0, "heldout_tasks": 4, "eval_every": 100, "weights_transport": Transport.FILE} | config
    return Learner(
        name=name,
        config=LearnerConfig(**settings),
        streams=streams,
        model_path=model,
        claim=claim,
        run_dir=run_dir,
        sampling=SamplingSpec(1.0, 1.0),
        heldout=HeldoutSpec((TaskType.KV_RETRIEVAL,), context_tokens=16, entities_per_world=4, max_new_tokens=2),
        run_id=run_id,
    )


def scored_rollout(
    group_id: str, index: int, group_size: int, prompt: Sequence[int], response: Sequence[int], **fields: Any
) -> ScoredRollout:
    """Sample `index` of group `group_id` as the reward actor would publish it: kv_retrieval,
    version 0, log-probs of −1 per token and reward 0 unless `fields` say otherwise."""
    defaults: dict[str, Any] = {
        "task_type": "kv_retrieval",
        "policy_version": 0,
        "prompt_ref": "",
        "behaviour_logprobs": tuple(-1.0 for _ in response),
        "response_text": "",
        "reference": "",
        "answer_kind": "text",
        "turns": 1,
        "finish_reason": "length",
    }
    return ScoredRollout(
        rollout_id=f"{group_id}/{index}",
        task_id=group_id,
        group_id=group_id,
        sample_index=index,
        group_size=group_size,
        prompt_ids=tuple(prompt),
        response_ids=tuple(response),
        **(defaults | fields),
    )
