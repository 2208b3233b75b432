"""The synthesis actor's Prometheus series (`longtide_synthesis_*`), all labelled by actor."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from actors.synthesis.retrospect import BINS

TASKS_MADE = Counter("longtide_synthesis_tasks", "Tasks synthesised.", ["actor", "task_type"])
FACTS = Counter("longtide_synthesis_facts", "Facts extracted from documents.", ["actor"])
SHORT = Counter("longtide_synthesis_short_contexts", "Tasks not made: context below min_context_fill.", ["actor"])
NO_FACTS = Counter(
    "longtide_synthesis_documents_without_facts", "Documents yielding no facts and no tables.", ["actor"]
)
HELD_OUT = Counter(
    "longtide_synthesis_held_out_documents",
    "Documents in the held-out split (synthesis.heldout_fraction): not stored, no training task.",
    ["actor"],
)
LLM_FAILED = Counter(
    "longtide_synthesis_llm_extraction_failures", "Documents whose LLM extraction failed (dead-lettered).", ["actor"]
)
TABLES = Counter("longtide_synthesis_tables", "Tables read from documents.", ["actor"])
TABLE_PROBLEMS = Counter(
    "longtide_synthesis_table_problems", "Tables left out: ragged, unnamed columns, no rows.", ["actor"]
)
UNVERIFIED = Counter(
    "longtide_synthesis_unverified", "Tasks not published: the independent solver disagreed.", ["actor", "task_type"]
)
EVIDENCE_CUT = Counter(
    "longtide_synthesis_evidence_cut",
    "Tasks whose evidence spans did not all fit synthesis.max_evidence_chars (the rest left out).",
    ["actor"],
)
LEAKED = Counter(
    "longtide_synthesis_answer_leaks", "Tasks not published: the answer is readable from the question.", ["actor"]
)
NO_CONTEXT = Counter(
    "longtide_synthesis_unassembled",
    "Tasks not made: evidence longer than context_tokens, or too few documents to fill it.",
    ["actor", "task_type"],
)

GROUPS = Counter(
    "longtide_synthesis_scored_groups",
    "Scored groups by their task's pass rate: unsolved (none correct), hard (< half), medium, solved (all).",
    ["actor", "task_type", "bin"],
)
PASS_AT_K = Gauge(
    "longtide_synthesis_pass_at_k",
    "pass@k over the latest 256 scored groups per task type.",
    ["actor", "task_type", "k"],
)
REPUBLISHED = Counter(
    "longtide_synthesis_republished_tasks",
    "Unsolved tasks re-published (retrospective sampling).",
    ["actor", "task_type"],
)
COUNT_MISMATCHES = Counter(
    "longtide_synthesis_token_count_mismatches",
    "Audited contexts whose joined token count missed the whole count (then every context is counted whole).",
    ["actor"],
)
REBUILT = Counter(
    "longtide_synthesis_rebuilt_documents", "Documents re-read from docs into a lost or stale store.", ["actor"]
)


def zero_series(name: str, task_types: Sequence[str]) -> None:
    """Every series of actor `name` exists from the start, at 0 (so `rate()` sees 0, not nothing)."""
    for metric in (
        FACTS,
        SHORT,
        NO_FACTS,
        HELD_OUT,
        LLM_FAILED,
        TABLES,
        TABLE_PROBLEMS,
        LEAKED,
        COUNT_MISMATCHES,
        REBUILT,
        EVIDENCE_CUT,
    ):
        metric.labels(name)
    for task_type in task_types:
        for metric in (TASKS_MADE, UNVERIFIED, NO_CONTEXT, REPUBLISHED):
            metric.labels(name, task_type)
        for bin_name in BINS:
            GROUPS.labels(name, task_type, bin_name)
