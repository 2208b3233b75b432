"""The import graph, read from the source (every import, at module level or inside a function):
layers point one way (schemas <- streams <- actors <- ops), no actor package imports another,
Kafka clients are reached only through `streams/`, and no module import circle exists. In the
tests, no test file imports another: what they share lives in helper modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "streams", "actors", "ops")
ACTOR_PACKAGES = ("ingest", "learner", "memory", "reward", "rollout", "synthesis")
KAFKA_CLIENTS = ("kafka", "confluent_kafka")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute module names `path` imports (`from a.b import c` counts as a.b and a.b.c)."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    sources = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in sources and m != name} for name, path in sources.items()}


def all_imports() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def test_layers_point_one_way() -> None:
    wrong = []
    for module, imported in all_imports().items():
        layer = PACKAGES.index(module.split(".")[0])
        for target in imported:
            top = target.split(".")[0]
            if top in PACKAGES and PACKAGES.index(top) > layer:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_actor_package_imports_another() -> None:
    wrong = []
    for module, imported in all_imports().items():
        parts = module.split(".")
        if parts[0] != "actors" or len(parts) < 2 or parts[1] not in ACTOR_PACKAGES:
            continue
        for target in imported:
            other = target.split(".")
            if other[0] == "actors" and len(other) > 1 and other[1] in ACTOR_PACKAGES and other[1] != parts[1]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_kafka_clients_only_in_streams() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, imported in all_imports().items()
        if not module.startswith("streams")
        for target in imported
        if target.split(".")[0] in KAFKA_CLIENTS
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_test_file_imports_another() -> None:
    """Shared helpers live in modules that are not test files (conftest.py, samples.py, *_helpers.py):
    importing a test file loads everything it imports (test_vllm_engine brings vLLM) and ties
    one file's tests to another's private names."""
    tests = {module_name(p): p for p in (ROOT / "tests").glob("test_*.py")}
    wrong = [
        f"{module} imports {target}" for module, path in tests.items() for target in imports_of(path) if target in tests
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_no_module_is_over_about_500_lines() -> None:
    limit = 520  # "about 500": one screenful of a file's outline, not a hard count
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for package in (*PACKAGES, "bench")
        for p in sorted((ROOT / package).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > limit
    ]
    assert not long, "\n".join(long)


def test_every_actor_kind_is_registered_once_for_launch_and_supervision() -> None:
    from ops.slots import KINDS
    from ops.supervisor import KINDS as SUPERVISED

    assert set(KINDS) == set(SUPERVISED)
    assert {p.name for p in (ROOT / "actors").iterdir() if (p / "actor.py").is_file()} == set(KINDS)
    for kind in KINDS:
        for module in ("config", "metrics", "actor"):  # one shape per actor package
            assert (ROOT / "actors" / kind / f"{module}.py").is_file(), f"actors/{kind}/{module}.py"
