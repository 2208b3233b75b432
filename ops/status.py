"""`longtide status`: one screen of the service (the policy, dead letters, and per actor its
health, policy version, lag, records in and out, staleness, restarts and dead letters, from its
/metrics endpoint parsed with prometheus_client's parser); `--json` for everything, including
topics and consumer groups; `--watch` to refresh it (records per second between screens).

longtide status [--watch [SECONDS]] [--json]   # the service whose state file is in .longtide/run
longtide status --bootstrap-servers host:9092
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.kafka import Message, StreamsConfig
from streams.logs import OffsetReader, consumer_groups, newest_of_run, read_each
from streams.topics import ALL_TOPICS, DLQ, POLICY

log = logging.getLogger(__name__)


def _latest_policy(messages: list[Message], run_id: str | None) -> dict[str, Any]:
    """The newest `policy` record among `messages` (of `run_id`, when the service's state names
    it), and how many records status could not read or left out: any record may sit on the topic
    (a foreign producer's garbage, an older build's), and none stops status."""
    latest, skipped = newest_of_run(messages, run_id)
    found = {"skipped": dict(skipped)}
    if latest is None:
        return found
    return {
        **found,
        "version": latest.version,
        "step": latest.step,
        "groups_consumed": latest.groups_consumed,
        "weights_ref": latest.weights_ref,
        "metrics": dict(latest.metrics),
    }


def scrape(address: str) -> dict[str, float]:
    """One endpoint's `longtide_*` samples, parsed with prometheus_client's exposition parser:
    'name{label="value",...}' -> value."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=2).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("longtide_") and not sample.name.endswith("_created"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def total(samples: dict[str, float], suffix: str) -> float | None:
    """The sum of every sample whose name ends with `suffix`; None when the actor has none."""
    found = [v for k, v in samples.items() if k.split("{")[0].endswith(suffix) and v == v]
    return sum(found) if found else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def actor_row(name: str, samples: dict[str, float], restarts: int) -> dict[str, Any]:
    """One actor's line of `longtide status`: health, policy version, lag, records in and out,
    staleness of what it trained (learner), restarts and dead letters."""
    if "unreachable" in samples:
        return {"actor": name, "health": "unreachable", "restarts": restarts}
    versions = [v for k, v in samples.items() if k.split("{")[0].endswith("_policy_version")]
    staleness_n = total(samples, "_staleness_versions_count")
    staleness_sum = total(samples, "_staleness_versions_sum") or 0.0
    return {
        "actor": name,
        "health": "up",
        "version": int(max(versions)) if versions else None,
        "lag": _int(total(samples, "_consumer_lag_records")),
        "consumed": _int(total(samples, "_records_consumed_total")),
        "produced": _int(total(samples, "_records_produced_total")),
        "staleness": round(staleness_sum / staleness_n, 2) if staleness_n else None,
        "restarts": restarts,
        "dead_letters": _int(total(samples, "_dead_letters_total")),
    }


def collect_status(
    streams: StreamsConfig,
    endpoints: dict[str, str] | None = None,
    restarts: dict[str, int] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """`restarts`: each actor's restart count, and `run_id` the service's run, from the launcher's
    state file (without them: every actor is unknown, and the newest policy of any run shows)."""
    offsets = OffsetReader(streams, client_id="longtide-status")
    try:
        topics = {t.name: offsets.end_offsets(t.name) for t in ALL_TOPICS}
        group_state = {
            group: {
                f"{t}/{p}": {"committed": o, "lag": max(0, topics.get(t, {}).get(p, o) - o)}
                for (t, p), o in sorted(offsets.committed(group).items())
            }
            for group in consumer_groups(streams, "longtide")
        }
    finally:
        offsets.close()
    logs = read_each(streams, [POLICY.name, DLQ.name], idle_ms=500)
    actors: dict[str, dict[str, float]] = {}
    for name, address in (endpoints or {}).items():
        try:
            actors[name] = scrape(address)
        except OSError as exc:
            actors[name] = {"unreachable": 1.0}
            log.info("status: %s at %s unreachable: %s", name, address, exc)
    return {
        "bootstrap_servers": streams.bootstrap_servers,
        "topics": {name: {"end_offsets": parts, "records": sum(parts.values())} for name, parts in topics.items()},
        "consumer_groups": group_state,
        "policy": _latest_policy(logs[POLICY.name], run_id),
        "dead_letters": len(logs[DLQ.name]),
        "actors": actors,
        "restarts": dict(restarts or {}),
        "rows": [actor_row(n, a, (restarts or {}).get(n, 0)) for n, a in actors.items() if n != "launcher"],
    }


def render_status(status: dict[str, Any], previous: dict[str, Any] | None = None, seconds: float = 0.0) -> str:
    """One screen: the policy, dead letters, and a line per actor; with `previous` (the screen
    `seconds` before), records per second instead of totals."""
    policy = status["policy"] or {}
    lines = [
        f"broker {status['bootstrap_servers']}   policy version {policy.get('version', '-')}"
        f" (step {policy.get('step', '-')}, groups consumed {policy.get('groups_consumed', '-')})"
        f"   dead letters {status['dead_letters']}",
    ]
    skipped = policy.get("skipped") or {}
    if skipped:
        lines.append(
            "policy records passed over: "
            + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()))
            + " (not this build's records, or another run's; see `longtide status --json`)"
        )
    lines += [
        "",
        f"{'actor':<18} {'health':<12} {'version':>7} {'lag':>7} {'in':>9} {'out':>9} {'stale':>6} "
        f"{'restarts':>8} {'dlq':>5}",
    ]
    before = {r["actor"]: r for r in (previous or {}).get("rows", [])}
    for row in status["rows"]:
        flow = {}
        for key in ("consumed", "produced"):
            value, prior = row.get(key), before.get(row["actor"], {}).get(key)
            if value is not None and prior is not None and seconds > 0:
                flow[key] = f"{(value - prior) / seconds:.1f}/s"
            else:
                flow[key] = "-" if value is None else str(value)
        lines.append(
            f"{row['actor']:<18} {row['health']:<12} {_cell(row.get('version')):>7} {_cell(row.get('lag')):>7} "
            f"{flow['consumed']:>9} {flow['produced']:>9} {_cell(row.get('staleness')):>6} "
            f"{row['restarts']:>8} {_cell(row.get('dead_letters')):>5}"
        )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, sort_keys=False)
