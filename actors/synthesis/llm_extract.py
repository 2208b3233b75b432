"""Facts from an LLM behind any OpenAI-compatible endpoint (a `vllm serve`, on CPU too).

The document goes out in a completion prompt; with `structured` on, the request carries the
schema as a regular expression (vLLM's `structured_outputs`), which the server enforces by
guided decoding. Whatever
comes back is validated: JSON, the schema, and grounding (the subject and the object must
occur in the document; their first occurrence is the fact's span). A request that fails (an
HTTP error, a timeout, text that is not JSON or not the schema) is retried `retries` times;
then `ExtractionFailed` says why, and the synthesis actor dead-letters the document's
extraction while its rule-based facts are still used. Ungrounded facts are dropped and
counted, never kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from actors.synthesis.extract import Fact


def _string(max_length: int) -> str:
    return f'"[^"\\\\\\n]{{1,{max_length}}}"'


_FACT = '\\{"subject":' + _string(48) + ',"relation":' + _string(32) + ',"object":' + _string(48) + "\\}"
PATTERN = '\\{"facts":\\[(' + _FACT + "(," + _FACT + "){0,5})?\\]\\}"
"""The output's shape, {"facts": [{"subject", "relation", "object"}, … up to 6]} with strings of
at most 48/32/48 characters, as a regular expression with no free whitespace: the form the
server's guided decoding enforces per request (vLLM applies its JSON-whitespace switch only
server-wide, and a model can spend its whole budget on newlines that valid JSON allows)."""

PROMPT = """Extract facts from the document as JSON: {{"facts": [{{"subject": ..., "relation": ..., "object": ...}}]}}.
Subjects and objects are copied from the document; relations are short verb phrases.

Document:
{text}

JSON:"""


@dataclass(frozen=True)
class LLMExtractorConfig:
    """An OpenAI-compatible endpoint that extracts facts (off while `base_url` is empty)."""

    base_url: str = ""
    """e.g. http://127.0.0.1:8000/v1 (a `vllm serve`); empty: no LLM extraction."""
    model: str = ""
    """The served model's name."""
    structured: bool = True
    """Constrain the output to the schema by vLLM's `structured_outputs` (guided decoding, as
    `PATTERN`); off for servers without it (the output is validated either way)."""
    timeout_s: float = 60.0
    """Per request."""
    retries: int = 2
    """Further tries after a failed request or invalid output."""
    max_tokens: int = 1024
    """Output budget per document."""
    max_input_chars: int = 16_000
    """Documents are cut to this many characters (the model's window bounds what it reads)."""

    def __post_init__(self) -> None:
        if self.base_url and not self.model:
            raise ValueError("synthesis.llm.model must name the served model when synthesis.llm.base_url is set")
        if self.timeout_s <= 0 or self.retries < 0 or self.max_tokens < 16:
            raise ValueError(
                f"synthesis.llm: timeout_s ({self.timeout_s}) > 0, retries ({self.retries}) >= 0 "
                f"and max_tokens ({self.max_tokens}) >= 16 are required"
            )


class ExtractionFailed(RuntimeError):
    """The endpoint gave no valid answer within the tries."""


def parse(output: str, doc_id: str, text: str) -> tuple[list[Fact], int]:
    """(grounded facts, ungrounded count) from the model's output; ValueError when the output
    is not JSON of the schema."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos}): {output[:80]!r}") from None
    items = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"no 'facts' list in {output[:80]!r}")
    facts, ungrounded = [], 0
    lowered = text.lower()
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("subject", "relation", "object")
        ):
            raise ValueError(f"a fact is not {{subject, relation, object}} strings: {item!r:.80}")
        subject, relation, obj = (" ".join(item[k].split()) for k in ("subject", "relation", "object"))
        at, end = lowered.find(subject.lower()), lowered.find(obj.lower())
        if not subject or not relation or not obj or at < 0 or end < 0:
            ungrounded += 1
            continue
        span = (min(at, end), max(at + len(subject), end + len(obj)))
        facts.append(Fact(subject, relation.lower(), obj, doc_id, *span, "entity", "llm"))
    return facts, ungrounded


class LLMExtractor:
    def __init__(self, config: LLMExtractorConfig) -> None:
        from openai import OpenAI

        self._errors = __import__("openai").APIError
        self.config = config
        self.client = OpenAI(base_url=config.base_url, api_key="unused", timeout=config.timeout_s, max_retries=0)
        self.ungrounded = 0

    def extract(self, doc_id: str, text: str) -> list[Fact]:
        """Grounded facts, or ExtractionFailed naming the last problem."""
        cfg = self.config
        extra = {"structured_outputs": {"regex": PATTERN}}  # vLLM's guided decoding, per request
        problem = ""
        for _ in range(1 + cfg.retries):
            try:
                response = self.client.completions.create(
                    model=cfg.model,
                    prompt=PROMPT.format(text=text[: cfg.max_input_chars]),
                    max_tokens=cfg.max_tokens,
                    temperature=0.0,
                    extra_body=extra if cfg.structured else None,
                )
                facts, ungrounded = parse(response.choices[0].text, doc_id, text)
            except ValueError as exc:
                problem = f"invalid output: {exc}"
                continue
            except self._errors as exc:  # HTTP errors, refused connections, timeouts
                problem = f"{type(exc).__name__}: {exc}"
                continue
            self.ungrounded += ungrounded
            return facts
        raise ExtractionFailed(f"LLM extractor at {cfg.base_url}: {1 + cfg.retries} tries failed; last: {problem}")

    def close(self) -> None:
        self.client.close()
