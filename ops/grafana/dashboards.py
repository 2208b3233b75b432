"""Longtide's Grafana dashboards, built with Grafana's Foundation SDK (typed to Grafana's schema).

    python -m ops.grafana.dashboards        # rewrites ops/grafana/*.json

The JSON files are what Grafana provisions (`docker/grafana/`); `tests/test_observability.py`
checks they are what this module builds, that Grafana's schema models read them back, and that
every panel's query returns data from a real Prometheus scraping a running pipeline. Recording
rules (`longtide:*`) come from `ops/prometheus/rules.yml`.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent

Query = tuple[str, str]
"""(PromQL, legend)."""
Panel = tuple[str, str, list[Query]]
"""(title, unit, queries)."""


def _p90(family: str, by: str = "", q: float = 0.9) -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({family}_bucket[5m])))"


DASHBOARDS: dict[str, tuple[str, dict[str, list[Panel]]]] = {
    "longtide-overview": (
        "Longtide / Overview",
        {
            "Service": [
                ("Targets up", "none", [('up{job="longtide"}', "{{process}}")]),
                ("Policy version", "none", [("max(longtide_learner_policy_version)", "learner")]),
                (
                    "RL steps per second",
                    "ops",
                    [('sum(rate(longtide_learner_steps_total{phase="rl"}[1m]))', "steps/s")],
                ),
                (
                    "Trajectories trained per second",
                    "ops",
                    [("longtide:learner_samples_trained:rate1m", "{{task_type}}")],
                ),
                ("Held-out accuracy", "percentunit", [("longtide_learner_heldout_accuracy", "{{task_type}}")]),
                ("Dead letters (5 min)", "none", [("longtide:dead_letters:increase5m", "{{actor}} {{topic}}")]),
                ("Restarts (15 min)", "none", [("longtide:restarts:increase15m", "{{actor}}")]),
                ("Resident memory", "bytes", [('process_resident_memory_bytes{job="longtide"}', "{{process}}")]),
            ],
        },
    ),
    "longtide-pipeline": (
        "Longtide / Pipeline flow and lag",
        {
            "Flow": [
                (
                    "Documents ingested per second",
                    "ops",
                    [("sum(rate(longtide_ingest_documents_total[1m]))", "docs/s")],
                ),
                (
                    "Tasks made per second",
                    "ops",
                    [("sum by (task_type) (rate(longtide_synthesis_tasks_total[1m]))", "{{task_type}}")],
                ),
                ("Records consumed per second", "ops", [("longtide:records_consumed:rate1m", "{{actor}} {{topic}}")]),
                (
                    "Records produced per second",
                    "ops",
                    [
                        (
                            'sum by (actor, topic) (rate({__name__=~"longtide_[a-z]+_records_produced_total"}[1m]))',
                            "{{actor}} {{topic}}",
                        )
                    ],
                ),
            ],
            "Latency": [
                (
                    "Document ingested to first trained, p90",
                    "s",
                    [(_p90("longtide_learner_ingest_to_train_seconds"), "p90")],
                ),
            ],
            "Lag and losses": [
                ("Consumer lag", "none", [("longtide:consumer_lag_records:sum", "{{actor}} {{topic}}")]),
                (
                    "Processing time per record, p90",
                    "s",
                    [
                        (
                            "histogram_quantile(0.9, sum by (le, actor) "
                            '(rate({__name__=~"longtide_[a-z]+_record_seconds_bucket"}[5m])))',
                            "{{actor}}",
                        )
                    ],
                ),
                (
                    "Processing time per poll, p90",
                    "s",
                    [
                        (
                            "histogram_quantile(0.9, sum by (le, actor) "
                            '(rate({__name__=~"longtide_[a-z]+_process_seconds_bucket"}[5m])))',
                            "{{actor}}",
                        )
                    ],
                ),
                ("Dead letters (5 min)", "none", [("longtide:dead_letters:increase5m", "{{actor}} {{topic}}")]),
                (
                    "Duplicates dropped (5 min)",
                    "none",
                    [
                        (
                            'sum by (actor, topic) (increase({__name__=~"longtide_[a-z]+_duplicates_dropped_total"}[5m]))',
                            "{{actor}} {{topic}}",
                        )
                    ],
                ),
            ],
        },
    ),
    "longtide-learning": (
        "Longtide / Learning health",
        {
            "Reward and accuracy": [
                ("Reward of the last batch", "percentunit", [("longtide_learner_reward_mean", "{{task_type}}")]),
                ("Held-out accuracy", "percentunit", [("longtide_learner_heldout_accuracy", "{{task_type}}")]),
                (
                    "Reward per trajectory, p90",
                    "percentunit",
                    [(_p90("longtide_reward_score", "task_type"), "{{task_type}}")],
                ),
                (
                    "Trajectories left out (5 min)",
                    "none",
                    [
                        (
                            "sum by (task_type) (increase(longtide_learner_uninformative_dropped_total[5m]))",
                            "equal rewards {{task_type}}",
                        ),
                        ("sum(increase(longtide_learner_stale_dropped_total[5m]))", "stale"),
                        ("sum(increase(longtide_learner_aepo_masked_total[5m]))", "AEPO-masked negatives"),
                    ],
                ),
            ],
            "Policy": [
                ("Batch entropy", "none", [("longtide_learner_entropy", "{{actor}}")]),
                ("AEPO masking negatives", "none", [("longtide_learner_aepo_masking", "{{actor}}")]),
                ("Clip fraction", "percentunit", [("longtide_learner_clip_fraction", "{{actor}}")]),
                ("KL to the reference", "none", [("longtide_learner_kl", "{{actor}}")]),
                ("Gradient norm", "none", [("longtide_learner_grad_norm", "{{phase}}")]),
            ],
            "Staleness and speed": [
                (
                    "Staleness of trained groups, p90",
                    "none",
                    [(_p90("longtide_learner_staleness_versions"), "versions")],
                ),
                ("Step time, p90", "s", [("longtide:learner_step_seconds:p90", "{{phase}}")]),
                ("Tokens trained per second", "ops", [("longtide_learner_tokens_per_second", "{{phase}}")]),
            ],
        },
    ),
    "longtide-rollout": (
        "Longtide / Rollout engine",
        {
            "Generation": [
                ("Samples per second", "ops", [("longtide:rollout_samples:rate1m", "{{task_type}}")]),
                (
                    "Response tokens per second",
                    "ops",
                    [("sum by (actor) (rate(longtide_rollout_tokens_total[1m]))", "{{actor}}")],
                ),
                ("Engine call time, p90", "s", [("longtide:rollout_generate_seconds:p90", "p90")]),
                (
                    "Time paused by the staleness gate",
                    "percentunit",
                    [("rate(longtide_rollout_gate_wait_seconds_total[1m])", "{{actor}}")],
                ),
            ],
            "Weights": [
                ("Versions behind the learner", "none", [("longtide:rollout_policy_lag_versions", "{{actor}}")]),
                ("Weight sync time, p90", "s", [(_p90("longtide_rollout_weight_sync_seconds", "actor"), "{{actor}}")]),
                (
                    "Policy records skipped (15 min)",
                    "none",
                    [("sum by (reason) (increase(longtide_rollout_policy_records_skipped_total[15m]))", "{{reason}}")],
                ),
            ],
        },
    ),
    "longtide-memory": (
        "Longtide / Memory",
        {
            "Reading": [
                (
                    "Documents read per second",
                    "ops",
                    [("sum by (actor) (rate(longtide_memory_documents_read_total[1m]))", "{{actor}}")],
                ),
                (
                    "Chunks read per second",
                    "ops",
                    [("sum by (actor) (rate(longtide_memory_chunks_read_total[1m]))", "{{actor}}")],
                ),
                ("Document lag", "s", [("longtide_memory_document_lag_seconds", "{{actor}}")]),
                ("Read time per document, p90", "s", [(_p90("longtide_memory_read_seconds", "actor"), "{{actor}}")]),
            ],
            "Memory and queries": [
                ("Memory size, p90", "none", [(_p90("longtide_memory_memory_tokens", "actor"), "tokens")]),
                ("Policy version read with", "none", [("longtide_memory_policy_version", "{{actor}}")]),
                (
                    "Questions (5 min)",
                    "none",
                    [("sum by (outcome) (increase(longtide_memory_queries_total[5m]))", "{{outcome}}")],
                ),
            ],
            "Collections (the most recently active; memory.metric_collections)": [
                (
                    "Documents read per collection",
                    "none",
                    [("longtide_memory_collection_documents_read", "{{collection}}")],
                ),
                (
                    "Reads pending per collection (asked questions catching up)",
                    "none",
                    [("longtide_memory_collection_reads_pending", "{{collection}}")],
                ),
                (
                    "Memory age per collection (since its memories last changed)",
                    "s",
                    [("time() - longtide_memory_collection_updated_timestamp_seconds", "{{collection}}")],
                ),
                (
                    "Catch-up reads per second, reads pending",
                    "none",
                    [
                        ("sum by (actor) (rate(longtide_memory_catch_up_reads_total[1m]))", "{{actor}} reads/s"),
                        ("longtide_memory_reads_pending", "{{actor}} pending"),
                    ],
                ),
            ],
        },
    ),
}

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def build(uid: str) -> dict:
    """The dashboard `uid` as Grafana JSON."""
    title, rows = DASHBOARDS[uid]
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["longtide"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for row, panels in rows.items():
        board = board.with_row(dashboard.Row(row))
        for title_, unit, queries in panels:
            panel = timeseries.Panel().title(title_).unit(unit).datasource(DATASOURCE).height(8).span(12)
            for i, (expr, legend) in enumerate(queries):
                panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id("ABCDEFGH"[i]))
            board = board.with_panel(panel)
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def queries(board: dict) -> list[str]:
    """Every PromQL expression of a dashboard's panels."""
    return [t["expr"] for p in board.get("panels", []) for t in p.get("targets", [])]


def render(board: dict) -> str:
    return json.dumps(board, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    for uid in DASHBOARDS:
        (HERE / f"{uid}.json").write_text(render(build(uid)))
        print(f"wrote {HERE / f'{uid}.json'}")
