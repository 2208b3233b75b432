"""Bad records on `policy` (undecodable, another run's, weights that are gone, a reference no
transport reads) are skipped with a reason and a metric; the rollout actor keeps following."""

from __future__ import annotations

import uuid
from pathlib import Path

from prometheus_client import REGISTRY

from actors.modeling import load_policy
from actors.rollout.actor import RolloutActor
from actors.rollout.config import RolloutConfig
from actors.settings import EngineKind, Transport
from actors.weights import WeightPublisher
from schemas import PolicyVersion
from streams.blobs import ClaimCheck
from streams.kafka import Producer, StreamsConfig
from streams.topics import POLICY


def _skipped(name: str, reason: str) -> float:
    labels = {"actor": name, "reason": reason}
    return REGISTRY.get_sample_value("longtide_rollout_policy_records_skipped_total", labels) or 0.0


def _sync_until(actor: RolloutActor, reason: str, before: float) -> None:
    for _ in range(50):
        actor.policy.sync(timeout_ms=200)
        if _skipped(actor.name, reason) > before:
            return
    raise AssertionError(f"no policy record skipped for {reason}")


def test_bad_policy_records_are_skipped_with_a_reason(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex
    name = f"rollout-{run_id[:6]}"
    actor = RolloutActor(
        name=name,
        config=RolloutConfig(group_size=2, max_new_tokens=2, engine=EngineKind.TRANSFORMERS),
        streams=streams,
        model_path=tiny_model,
        claim=claim,
        max_staleness=1,
        groups_per_step=1,
        run_id=run_id,
    )
    producer = Producer(streams, client_id="test-policy")

    def announce(version: int, ref: str, run: str = run_id, consumed: int = 0) -> None:
        record = PolicyVersion(
            version=version, step=version, weights_ref=ref, groups_consumed=consumed, metrics=(), run_id=run
        )
        producer.send_records(POLICY.name, [record]).get(timeout=30)

    try:
        actor.policy.sync(timeout_ms=1000)  # reads what earlier tests left on `policy`
        assert actor.policy.version is None
        counts = {r: _skipped(name, r) for r in ("undecodable", "other_run", "weights_unavailable", "bad_weights_ref")}

        producer.send(POLICY.name, b"not an arrow batch").get(timeout=30)
        _sync_until(actor, "undecodable", counts["undecodable"])
        announce(7, "file:///nowhere.safetensors", run="another-run")
        _sync_until(actor, "other_run", counts["other_run"])
        announce(0, f"file://{tmp_path}/gone.safetensors")
        _sync_until(actor, "weights_unavailable", counts["weights_unavailable"])
        assert actor.policy.version is None, "no weights loaded: nothing is generated"

        model, _ = load_policy(tiny_model)
        publisher = WeightPublisher(
            Transport.FILE, directory=tmp_path / "weights", keep=2, dtype=None, actor="test", device="cpu"
        )
        ref = publisher.publish(1, model.state_dict())
        announce(1, ref)
        for _ in range(50):
            actor.policy.sync(timeout_ms=200)
            if actor.policy.version == 1:
                break
        assert actor.policy.version == 1, "the actor kept following its run's policy"

        # the learner re-announces version 1 after dropping 5 groups: the gate's clock moves, no reload
        announce(1, ref, consumed=5)
        for _ in range(50):
            actor.policy.sync(timeout_ms=200)
            if actor.policy.groups_consumed == 5:
                break
        assert (actor.policy.version, actor.policy.groups_consumed) == (1, 5)

        announce(2, "carrier-pigeon://loft/2")
        _sync_until(actor, "bad_weights_ref", counts["bad_weights_ref"])
        assert actor.policy.version == 1, "an unreadable reference leaves the loaded weights in place"
    finally:
        producer.close()
        actor.close()


def test_the_memory_actor_follows_through_the_same_follower(
    streams: StreamsConfig, tiny_model: str, tmp_path: Path
) -> None:
    # the memory actor reads with the base model (-1) until its run's first version loads, and
    # counts and times what it follows under its own kind, as rollout does
    from actors.engines import make_engine
    from actors.settings import VLLMSettings
    from actors.weights import PolicyFollower

    run_id = uuid.uuid4().hex
    name = f"memory-{run_id[:6]}"
    engine = make_engine(EngineKind.TRANSFORMERS, tiny_model, "float32", VLLMSettings())
    follower = PolicyFollower(
        kind="memory", name=name, streams=streams, run_id=run_id, engine=engine, initial=-1, wait=False
    )
    producer = Producer(streams, client_id="test-policy-memory")
    version = REGISTRY.get_sample_value("longtide_memory_policy_version", {"actor": name})
    unavailable = {"actor": name, "reason": "weights_unavailable"}
    try:
        assert follower.version == -1 and version == -1
        assert REGISTRY.get_sample_value("longtide_memory_policy_records_skipped_total", unavailable) == 0
        model, _ = load_policy(tiny_model)
        publisher = WeightPublisher(
            Transport.FILE, directory=tmp_path / "weights", keep=2, dtype=None, actor="test", device="cpu"
        )
        ref = publisher.publish(0, model.state_dict())
        for v, weights_ref in ((0, ref), (1, f"file://{tmp_path}/gone.safetensors")):
            record = PolicyVersion(
                version=v, step=v, weights_ref=weights_ref, groups_consumed=0, metrics=(), run_id=run_id
            )
            producer.send_records(POLICY.name, [record]).get(timeout=30)
            for _ in range(50):
                follower.sync(timeout_ms=200)
                skipped = REGISTRY.get_sample_value("longtide_memory_policy_records_skipped_total", unavailable)
                if follower.version == v or skipped:
                    break
        assert follower.version == 0, "version 1's weights are gone: the memory actor reads on with version 0"
        assert REGISTRY.get_sample_value("longtide_memory_policy_records_skipped_total", unavailable) == 1
        assert REGISTRY.get_sample_value("longtide_memory_weight_sync_seconds_count", {"actor": name}) == 1
    finally:
        producer.close()
        follower.close()
        engine.close()
