"""`longtide status`: topics, consumer groups, the latest policy version, dead letters, actors.

longtide status                          # the service whose state file is in .longtide/run
longtide status --bootstrap-servers host:9092
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from kafka import KafkaAdminClient

from schemas import PolicyVersion, decode
from streams.kafka import OffsetReader, StreamsConfig, group_offsets, read_all
from streams.topics import ALL_TOPICS, POLICY


def _latest_policy(streams: StreamsConfig) -> dict[str, Any] | None:
    records = [
        r for m in read_all(streams, POLICY.name, idle_ms=500) for r in decode(m.value, PolicyVersion, m.headers)
    ]
    latest = max(records, key=lambda r: (r.version, r.groups_consumed), default=None)
    if latest is None:
        return None
    return {
        "version": latest.version,
        "step": latest.step,
        "groups_consumed": latest.groups_consumed,
        "weights_ref": latest.weights_ref,
        "metrics": dict(latest.metrics),
    }


def _scrape(address: str) -> dict[str, float]:
    """A few headline series of one /metrics endpoint."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=2).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("longtide_") and (
            "_total" in line or "policy_version" in line or "lag" in line or "heldout" in line
        ):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def collect_status(
    streams: StreamsConfig, endpoints: dict[str, str] | None = None, restarts: dict[str, int] | None = None
) -> dict[str, Any]:
    """`restarts`: each actor's restart count, from the launcher's state file."""
    offsets = OffsetReader(streams, client_id="longtide-status")
    try:
        topics = {t.name: offsets.end_offsets(t.name) for t in ALL_TOPICS}
    finally:
        offsets.close()
    admin = KafkaAdminClient(bootstrap_servers=streams.bootstrap_servers, client_id="longtide-status")
    try:
        groups = sorted(g["group_id"] for g in admin.list_groups() if g["group_id"].startswith("longtide"))
    finally:
        admin.close()
    group_state = {}
    for group in groups:
        committed = group_offsets(streams, group)
        group_state[group] = {
            f"{t}/{p}": {"committed": o, "lag": max(0, topics.get(t, {}).get(p, o) - o)}
            for (t, p), o in sorted(committed.items())
        }
    actors = {}
    for name, address in (endpoints or {}).items():
        try:
            actors[name] = _scrape(address)
        except OSError as exc:
            actors[name] = {"unreachable": str(exc)}
    return {
        "bootstrap_servers": streams.bootstrap_servers,
        "topics": {name: {"end_offsets": parts, "records": sum(parts.values())} for name, parts in topics.items()},
        "consumer_groups": group_state,
        "policy": _latest_policy(streams),
        "dead_letters": len(read_all(streams, "dlq", idle_ms=500)),
        "actors": actors,
        "restarts": dict(restarts or {}),
    }


def render_status(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, sort_keys=False)
