"""DeepSpeed ZeRO on 2 CPU ranks (gloo) takes the same step as one plain PyTorch process.

Both sides start from the same tiny model and train one RL batch (8 rows, mixed lengths and
advantages) with the same micro-batch budget; DeepSpeed splits the micro-batches over 2
ranks. Compared: the loss, the gradient norm before clipping (the all-reduced gradient), and
every parameter after the AdamW step (lr 1e-4: Adam's first update lr · g / (|g| + ε) turns
a rounding difference in a gradient element near ε into up to lr in the parameter).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from actors.learner.ds_trainer import DeepSpeedTrainer
from actors.learner.ranks import RankGroup
from actors.learner.trainer import Phase, TorchTrainer
from actors.modeling import load_policy
from actors.sampling import SamplingSpec
from streams.broker import free_port
from tests.trainer_helpers import rl_rows, settings

pytestmark = pytest.mark.deepspeed

LR = 1e-4
SPEC = SamplingSpec(0.7, 1.0)
TWO_EPOCHS = [list(range(8)), list(range(8))]
"""Two optimizer steps on one batch, π_prox from a forward before either. At a 40-token budget
the 8 rows make an odd number of micro-batches, so rank 0 runs a filler (weight 0) that repeats
rows it holds: the filler must not overwrite their proximal log-probs."""


def _rank_main(rank: int, model_path: str, address: str, stage: int, updates: list | None, out: str) -> None:
    torch.set_num_threads(1)
    group = RankGroup(rank=rank, world=2, address=address, backend="gloo", timeout_s=120)
    model, tokenizer = load_policy(model_path)
    trainer = DeepSpeedTrainer(model, lr=LR, zero_stage=stage, settings=settings(40), spec=SPEC, pad_id=0, group=group)
    stats = trainer.step(rl_rows(len(tokenizer)), Phase.RL, updates)
    state = trainer.full_state()  # a collective under ZeRO-3: every rank calls it
    if rank == 0:
        torch.save({"stats": stats, "state": state}, out)
    group.close()


@pytest.mark.parametrize(("stage", "updates"), [(2, TWO_EPOCHS), (3, None)])
def test_two_rank_zero_step_equals_a_torch_step(tiny_model: str, tmp_path: Path, stage: int, updates) -> None:
    out = tmp_path / "rank0.pt"
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    args = (tiny_model, address, stage, updates, str(out))
    mp.start_processes(_rank_main, args=args, nprocs=2, start_method="spawn")
    got = torch.load(out)

    model, tokenizer = load_policy(tiny_model)
    reference = copy.deepcopy(model)
    trainer = TorchTrainer(reference, lr=LR, settings=settings(40), spec=SPEC, pad_id=0)
    expected = trainer.step(rl_rows(len(tokenizer)), Phase.RL, updates)

    print(
        f"ZeRO-{stage} x 2 vs torch: loss {got['stats']['loss']:.8f} / {expected['loss']:.8f}, "
        f"grad norm {got['stats']['grad_norm']:.8f} / {expected['grad_norm']:.8f}"
    )
    assert abs(got["stats"]["loss"] - expected["loss"]) < 1e-5
    assert abs(got["stats"]["grad_norm"] - expected["grad_norm"]) < 1e-5 * max(1.0, expected["grad_norm"])
    assert got["stats"]["tokens"] == expected["tokens"]
    want = reference.state_dict()
    assert set(got["state"]) == set(want), "every key, tied aliases included"
    worst = max(float((got["state"][k].float() - want[k].float()).abs().max()) for k in want)
    moved = max(float((want[k] - model.state_dict()[k]).abs().max()) for k in want)
    print(f"max parameter difference {worst:.2e} (the step moved parameters by up to {moved:.2e})")
    assert worst < 1e-5 and moved > 1e-5


def _resume_main(rank: int, model_path: str, address: str, directory: str, out: str) -> None:
    torch.set_num_threads(1)
    group = RankGroup(rank=rank, world=2, address=address, backend="gloo", timeout_s=120)
    rows = rl_rows(len(load_policy(model_path)[1]))

    def trainer() -> DeepSpeedTrainer:
        model, _ = load_policy(model_path)
        return DeepSpeedTrainer(model, lr=LR, zero_stage=2, settings=settings(40), spec=SPEC, pad_id=0, group=group)

    straight = trainer()
    straight.step(rows, Phase.RL)
    straight.save_state(directory)  # every rank writes its optimizer partition
    straight.step(rows, Phase.RL)
    resumed = trainer()  # the base weights and fresh moments, until the checkpoint is loaded
    resumed.load_state(directory, model_dir="")
    resumed.step(rows, Phase.RL)
    if rank == 0:
        torch.save({"straight": straight.full_state(), "resumed": resumed.full_state()}, out)
    group.close()


def test_zero2_ranks_resume_from_their_checkpoint_exactly(tiny_model: str, tmp_path: Path) -> None:
    """Step, checkpoint, step on 2 ranks == step, then new engines loading the checkpoint, step."""
    out = tmp_path / "rank0.pt"
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    args = (tiny_model, address, str(tmp_path / "ckpt"), str(out))
    mp.start_processes(_resume_main, args=args, nprocs=2, start_method="spawn")
    got = torch.load(out)
    worst = max(float((got["straight"][k] - got["resumed"][k]).abs().max()) for k in got["straight"])
    print(f"ZeRO-2 resumed vs straight after the second step: max |Δ| = {worst:.2e}")
    assert worst < 1e-6
