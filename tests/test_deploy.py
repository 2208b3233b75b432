"""The docker/ deployment, validated without a Docker engine: `docker-compose config` (Debian's
compose CLI) accepts the file, every service restarts (the launcher resuming its run), every
image and base image is pinned to a version, every file it
mounts or builds from exists, Prometheus's config checks with `promtool`, and Grafana is
provisioned with the dashboards' folder. Building and starting the images is not checked here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.prometheus_helpers import RULES, binary

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER / "compose.yml"
PINNED = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+[\w.-]*$")
"""name:1.2.3[-suffix], never a bare name or `latest`."""


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose not found: install Debian's docker-compose package (`make test` does)"
    done = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_service_restarts_and_the_launcher_resumes_its_run() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", f"{name} has no restart policy"
    assert "longtide run --resume=if-any" in services["longtide"]["command"][0]


def test_every_image_and_base_image_is_pinned() -> None:
    images = {service.get("image", "") for service in compose()["services"].values()}
    for image in images - {"longtide:cpu"}:  # longtide:cpu is built here, from docker/Dockerfile
        assert PINNED.match(image), f"{image} is not pinned to a version"
    for dockerfile in DOCKER.glob("Dockerfile*"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                assert PINNED.match(line.split()[1]), f"{dockerfile.name}: {line} is not pinned"


def test_every_file_it_builds_from_or_mounts_exists() -> None:
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"]).is_dir(), name
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_config_checks_with_the_rules(tmp_path: Path) -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    mounted = {v.split(":")[1] for v in compose()["services"]["prometheus"]["volumes"]}
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"] and "/etc/prometheus/rules.yml" in mounted
    config["rule_files"] = [str(RULES)]  # the mounted paths, as they are on this machine
    (tmp_path / "targets.json").write_text("[]")
    config["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(tmp_path / "targets.json")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_is_provisioned_with_the_dashboards_and_prometheus() -> None:
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/longtide.yml").read_text())["providers"][0]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in compose()["services"]["grafana"]["volumes"]}
    source = mounted[provider["options"]["path"]]
    assert sorted(p.name for p in (DOCKER / source).glob("*.json")), "the dashboards' JSON files"
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090" and "prometheus" in compose()["services"]
