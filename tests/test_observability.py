"""Prometheus rules and Grafana dashboards, checked without a running service: `promtool check
rules`, `promtool test rules` (every alert fires on a bad series and not on a healthy one), the
dashboards are what `ops/grafana/dashboards.py` builds, and Grafana's schema models (the Foundation
SDK) read them back. `tests/test_pipeline.py` evaluates every query against a real Prometheus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from ops.grafana.dashboards import DASHBOARDS, HERE, build, queries, render
from tests.prometheus_helpers import RULES, binary

TESTS = RULES.parent / "rules_test.yml"


def promtool(*args: str) -> str:
    done = subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rules_check_and_their_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(RULES))
    assert "SUCCESS" in promtool("test", "rules", str(TESTS))


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in yaml.safe_load(TESTS.read_text())["tests"] for t in case["alert_rule_test"]}
    assert alerts == tested


def test_a_prometheus_config_for_the_run_checks(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    (tmp_path / "targets.json").write_text("[]")
    config.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {"job_name": "longtide", "file_sd_configs": [{"files": [str(tmp_path / "targets.json")]}]}
                ],
            }
        )
    )
    assert "SUCCESS" in promtool("check", "config", str(config))


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboards_are_built_and_read_back_by_grafanas_schema(uid: str) -> None:
    committed = (HERE / f"{uid}.json").read_text()
    assert committed == render(build(uid)), f"run `python -m ops.grafana.dashboards` ({uid}.json is stale)"
    board = Dashboard.from_json(json.loads(committed))
    assert board.uid == uid and board.panels and queries(json.loads(committed))
