"""A real Prometheus (Debian's package) for tests: scraping a service's file_sd targets with
Longtide's rules loaded, and its HTTP query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from streams.broker import free_port

RULES = Path(__file__).resolve().parents[1] / "ops" / "prometheus" / "rules.yml"


def binary(name: str) -> str:
    """The path of `name` (prometheus, promtool); fails naming the package when it is missing."""
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found: install Debian's prometheus package (.ci/run does)")
    return found


class RunningPrometheus:
    """Prometheus on a free loopback port with a temporary storage directory, scraping the
    targets in `targets_file` every second and evaluating `RULES` every second."""

    def __init__(self, targets_file: Path, workdir: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "longtide", "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}]}
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        self.log = open(workdir / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait(lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200, 60, "ready")

    def _wait(self, check: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.process.returncode}); see {self.log.name}")
            time.sleep(0.5)
        raise AssertionError(f"prometheus not {what} after {timeout_s}s")

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) `expr` evaluates to now."""
        data = self._get("/api/v1/query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets")["activeTargets"]

    def wait_for_targets(self, n: int, timeout_s: float = 60) -> None:
        self._wait(lambda: sum(t["health"] == "up" for t in self.targets()) >= n, timeout_s, f"scraping {n} targets")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
