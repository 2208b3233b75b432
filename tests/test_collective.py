"""The collective weight path over gloo (the same code runs NCCL between GPUs).

Receivers here are threads of the test process and spawned processes: each pairs with the
sender through the store, asks for one version and gets exactly those bytes.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from actors import collective
from actors.collective import (
    Address,
    CollectiveBackend,
    PairClosed,
    WeightReceiver,
    WeightSender,
    WeightsUnavailable,
    pack,
    unpack,
)
from actors.generation import TransformersEngine
from actors.modeling import load_policy
from actors.settings import Transport
from actors.weights import WeightPublisher, fetch_weights
from streams.broker import free_port
from tests.conftest import wait_for


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(11, 5, generator=g)
    return {
        "embed.weight": embed,
        "head.weight": embed,  # tied: sent as its own tensor, like safetensors
        "norm.weight": torch.randn(5, generator=g),
        "position_ids": torch.arange(7),
        "scale": torch.tensor(0.5),
    }


def test_pack_unpack_round_trip_casts_only_floating_tensors() -> None:
    state = _state(0)
    layout, flat = pack(state, torch.bfloat16, torch.device("cpu"))
    assert [row[0] for row in layout] == list(state)
    assert all(row[3] % 64 == 0 for row in layout), "every tensor starts on a 64-byte boundary"
    # 11*5*2 = 110 bytes -> 128; twice; 5*2 = 10 -> 64; 7*8 = 56 -> 64; 2 bytes -> 64
    assert flat.numel() == 128 + 128 + 64 + 64 + 64
    out = unpack(layout, flat)
    for name, value in state.items():
        assert out[name].shape == value.shape
        if value.is_floating_point():
            assert out[name].dtype == torch.bfloat16
            assert torch.equal(out[name], value.to(torch.bfloat16))
        else:
            assert out[name].dtype == value.dtype and torch.equal(out[name], value)
    kept = unpack(*pack(state, None, torch.device("cpu")))
    assert all(torch.equal(kept[k], v) for k, v in state.items())


def test_refs_parse_and_reject_garbage() -> None:
    address = Address(CollectiveBackend.NCCL, "10.0.0.7", 29500)
    assert Address.parse(address.ref(12)) == (address, 12)
    assert Address.is_ref("gloo://h:1/0") and not Address.is_ref("ray://longtide-weights/3")
    with pytest.raises(ValueError, match="expected gloo://HOST:PORT/VERSION"):
        Address.parse("gloo://nohost/3")


def test_each_receiver_gets_exactly_the_version_it_asks_for() -> None:
    sender = WeightSender(CollectiveBackend.GLOO, host="127.0.0.1", dtype=None)
    try:
        sender.stage(0, _state(0))
        ref1 = sender.stage(1, _state(1))
        first, second = WeightReceiver(sender.address), WeightReceiver(sender.address)
        assert (first.pair, second.pair) == (1, 2)
        got = first.receive(1)
        assert all(torch.equal(got[k], v) for k, v in _state(1).items())
        assert all(torch.equal(second.receive(0)[k], v) for k, v in _state(0).items())
        sender.stage(2, _state(2))  # keeps 2: version 0 goes
        assert sender.staged() == [1, 2]
        with pytest.raises(WeightsUnavailable, match=r"version 0 is no longer staged \(staged: \[1, 2\]\)"):
            second.receive(0)
        assert all(torch.equal(second.receive(2)[k], v) for k, v in _state(2).items()), "the pair survives a miss"
        assert Address.parse(ref1)[0] == sender.address
    finally:
        sender.close()


def test_a_receiver_without_the_runs_secret_is_refused_and_sent_nothing() -> None:
    sender = WeightSender(CollectiveBackend.GLOO, host="127.0.0.1", dtype=None)
    try:
        sender.stage(0, _state(0))
        started = time.monotonic()
        with pytest.raises(PairClosed, match="the sender refused pair 1: not this run's secret"):
            WeightReceiver(sender.address, secret="not the run's")
        assert time.monotonic() - started < 5, "refused at once, not after a timeout"
        assert sender.refused == 1 and sender.served == {}, "not one byte of weights went out"
        member = WeightReceiver(sender.address)  # the run's secret, from the environment
        assert torch.equal(member.receive(0)["norm.weight"], _state(0)["norm.weight"])
    finally:
        sender.close()


def test_a_request_not_signed_with_the_runs_secret_is_refused() -> None:
    """A receiver in the pair whose request's signature does not hold (as one forged by a
    process that read the store) is answered with an error and its pair ended."""
    sender = WeightSender(CollectiveBackend.GLOO, host="127.0.0.1", dtype=None)
    try:
        sender.stage(0, _state(0))
        receiver = WeightReceiver(sender.address)
        receiver.secret = "a forger's"  # the pair formed; this request is signed with another key
        with pytest.raises(WeightsUnavailable, match="refused: the request does not carry this run's secret"):
            receiver.receive(0)
        assert sender.served == {}
    finally:
        sender.close()


def test_the_store_listens_only_on_the_senders_address() -> None:
    import psutil

    sender = WeightSender(CollectiveBackend.GLOO, host="127.0.0.1", dtype=None)
    try:
        listening = [
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == sender.address.port
        ]
        assert listening == ["127.0.0.1"], "TCPStore's own server would listen on every address"
    finally:
        sender.close()


def _receive_then_die(port: int, ready: mp.Event) -> None:
    receiver = WeightReceiver(Address(CollectiveBackend.GLOO, "127.0.0.1", port))
    receiver.receive(0)
    ready.set()
    time.sleep(60)  # killed by the test while paired


def test_a_dead_receiver_ends_only_its_own_pair_and_new_receivers_join_later() -> None:
    sender = WeightSender(CollectiveBackend.GLOO, host="127.0.0.1", dtype=torch.bfloat16)
    try:
        sender.stage(0, _state(0))
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        doomed = ctx.Process(target=_receive_then_die, args=(sender.address.port, ready))
        doomed.start()
        assert ready.wait(120), "the spawned receiver never got version 0"
        doomed.kill()
        doomed.join()
        sender.stage(1, _state(1))
        late = WeightReceiver(sender.address)  # joins after the death, on a pair of its own
        got = late.receive(1)
        assert got["embed.weight"].dtype == torch.bfloat16
        assert torch.equal(got["embed.weight"], _state(1)["embed.weight"].to(torch.bfloat16))
        wait_for(lambda: sender.served == {1: 1, 2: 1}, 10, "both transfers counted")
    finally:
        sender.close()


def test_publisher_and_engine_use_the_collective_path(tiny_model: str, tmp_path: Path) -> None:
    model, tokenizer = load_policy(tiny_model)
    publisher = WeightPublisher(
        Transport.COLLECTIVE, directory=tmp_path, keep=4, dtype=None, actor="learner-test", device="cpu"
    )
    try:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.5)
        ref = publisher.publish(0, model.state_dict())
        assert ref.startswith("gloo://127.0.0.1:") and ref.endswith("/0")
        fresh, _ = load_policy(tiny_model)
        engine = TransformersEngine(fresh, tokenizer)
        engine.load_published(ref)
        for key, value in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key
        assert torch.equal(fetch_weights(ref)["model.norm.weight"], model.state_dict()["model.norm.weight"])
    finally:
        publisher.close()


def test_pairs_close_from_either_side_and_a_gone_sender_is_unavailable_not_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender = WeightSender(CollectiveBackend.GLOO, host="127.0.0.1", dtype=None)
    sender.stage(0, _state(0))
    leaving = WeightReceiver(sender.address)
    leaving.receive(0)
    wait_for(lambda: sender.pairs_open == 1, 10, "one open pair")
    leaving.close()  # the receiver ends its pair: the sender's thread for it returns
    wait_for(lambda: sender.pairs_open == 0, 10, "the closed pair's thread to end")

    ref = sender.stage(1, _state(1))
    assert torch.equal(fetch_weights(ref)["norm.weight"], _state(1)["norm.weight"])  # a cached pair
    sender.close()  # the learner stops: every pair is marked closed
    started = time.monotonic()
    with pytest.raises(PairClosed, match="the sender closed pair"):
        fetch_weights(ref)
    assert time.monotonic() - started < 2, "a closed pair fails at once"
    # nothing listens at an address: unavailable after the connect timeout, not a crash
    monkeypatch.setattr(collective, "WeightReceiver", functools.partial(WeightReceiver, connect_timeout=1))
    with pytest.raises(WeightsUnavailable, match="DistNetworkError|DistStoreError|TimeoutError"):
        fetch_weights(Address(CollectiveBackend.GLOO, "127.0.0.1", free_port("127.0.0.1")).ref(3))


def test_a_reply_written_just_before_the_close_is_read_not_taken_for_the_close() -> None:
    """The sender writes a refusal's reply, then closes the pair; a receiver that looked for the
    reply just before it came and sees the close must still read the reply (this raced)."""
    from actors.collective import Waited, _wait_key

    class Store:  # what the TCP store answers: first no reply, then reply and close both there
        def __init__(self) -> None:
            self.looks = 0

        def check(self, keys: list[str]) -> bool:
            self.looks += 1
            return self.looks > 1

    assert _wait_key(Store(), "pair/1/reply/1", "pair/1/closed", timeout=1) is Waited.READY
