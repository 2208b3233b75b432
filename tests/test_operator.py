"""An operator's outside test of the service (issue 20): `longtide run` driven only through its
CLI, a foreign Kafka client (confluent-kafka), HTTP and signals, never through the classes
underneath.

One service runs for the module (the default demo's config with the memory actor on, vLLM
rollouts, a learner that trains for as long as it runs) and takes, in order: every poison shape
and a fuzzed batch on every input topic of every actor; the memory API asked about a collection
ingested by the CLI; a look at every listening socket and every process's memory; a stalled
actor; `kill -9` of the vLLM rollout worker; SIGTERM. Another `longtide run` is stopped during
its start-up. Nothing may be left running after a stop.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Producer as ForeignProducer

from actors.ingest.actor import check_sizes, content_id, parse_raw
from actors.ingest.config import IngestConfig
from actors.world import make_world
from schemas import DeadLetter, Document, PolicyVersion, Rollout, SchemaError, ScoredRollout, Task, decode
from streams.broker import EmbeddedBroker, free_port
from streams.kafka import Message, StreamsConfig
from streams.logs import OffsetReader, group_offsets, read_all
from tests.conftest import wait_for
from tests.fuzz import POISON_DOCS, garbage, random_documents, random_records
from tests.service import LONGTIDE, REPO, CliService, cli

pytestmark = pytest.mark.pipeline

HEAVY = ("torch", "ray", "vllm", "transformers")
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
CONSUMERS = {  # the consumer groups of each input topic (the learner's reads `scored`)
    "docs": ("longtide-synthesis", "longtide-memory"),
    "tasks": ("longtide-rollout",),
    "rollouts": ("longtide-reward",),
    "scored": ("longtide-synthesis", "longtide-learner"),
}
RECORD_OF = {"docs": Document, "tasks": Task, "rollouts": Rollout, "scored": ScoredRollout, "policy": PolicyVersion}
RSS_BOUND_MB = {"launcher": 400, "ingest-0": 350}
"""What a process that runs no model may hold (measured: README, "Measured")."""


def _timed(args: list[str], code: int) -> float:
    """The fastest of three runs of `longtide ARGS` (wall seconds), each ending with `code`."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([LONGTIDE, *args], capture_output=True, text=True, timeout=60, cwd=REPO)
        best = min(best, time.perf_counter() - start)
        assert done.returncode == code, (args, done.returncode, done.stderr[-2000:])
    return best


def _imports(args: list[str]) -> list[str]:
    """The heavy libraries `longtide ARGS` imports (run in a child that reports its modules)."""
    probe = (
        "import json, sys\nfrom ops.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_answers_at_once_without_loading_a_model(tmp_path: Path) -> None:
    """`--help`, `status`, `ask`, `ingest` and `report` import no torch, Ray or vLLM and answer
    within 2 s on an idle machine (the fastest of 3 runs; no service is running yet)."""
    run = tmp_path / "run" / "runs" / "20261204-000000-abcdef"
    run.mkdir(parents=True)
    rows = [
        {"version": v, "rl_step": v, "time": 1e9 + v, "reward_mean": 0.5, "heldout_kv_retrieval": 0.5} for v in range(5)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    notes = tmp_path / "notes.md"
    notes.write_text("bako color teal .")
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        servers = broker.bootstrap_servers
        commands = [  # (command, the exit code it must end with)
            (["--help"], 0),
            (["demo", "--help"], 0),  # (every config field through tyro; `run --help` is the same)
            (["status", "--help"], 0),
            (["status", "--bootstrap-servers", servers], 0),
            (["ingest", str(notes), "--bootstrap-servers", servers], 0),
            (["ask", "c", "q", "--url", f"http://127.0.0.1:{free_port('127.0.0.1')}", "--timeout", "1"], 1),
            (["report", str(tmp_path / "run")], 0),
        ]
        timings = {" ".join(c[:2]): _timed(c, code) for c, code in commands}
        imported = {" ".join(c[:2]): _imports(c) for c, _ in commands}
    print("CLI wall seconds (fastest of 3):", json.dumps({k: round(v, 2) for k, v in timings.items()}))
    assert all(not found for found in imported.values()), imported
    assert all(seconds < 2.0 for seconds in timings.values()), timings


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """`longtide run` with the default demo's config, the memory actor on and a learner that goes
    straight to RL and trains until stopped. It starts with empty topics (the fuzz is read at
    once); documents come later, through `longtide ingest`."""
    root = tmp_path_factory.mktemp("operator")
    running = CliService(
        root / "run",
        "--config",
        "ops/configs/demo.yaml",
        "--memory.enabled=true",
        "--learner.sft_steps=0",
        "--learner.rl_steps=0",
        "--learner.heldout_tasks=16",
        "--learner.eval_every=1000",
        "--supervision.poll_s=1",
        "--supervision.stall_s=25",
    ).start()
    try:
        running.wait_ready()
        yield running
    finally:
        if running.alive():
            running.stop()
        left = running.kill_leftovers()
        assert not left, f"processes left behind: {left}"


def _ingest_worlds(service: CliService, worlds: range, tmp_path: Path) -> None:
    feed = tmp_path / f"worlds-{worlds.start}.jsonl"
    feed.write_text(
        "".join(
            json.dumps({"collection": f"world-{w}", "text": make_world(w, 8).document(e)}) + "\n"
            for w in worlds
            for e in make_world(w, 8).entities
        )
    )
    done = cli("ingest", str(feed), "--run-dir", str(service.run_dir))
    assert done.returncode == 0, done.stderr


def _streams(service: CliService) -> StreamsConfig:
    state = service.state()
    assert state is not None, service.log()
    return StreamsConfig(bootstrap_servers=state["bootstrap_servers"])


def _scrape(address: str) -> str:
    return urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()


def _sample(text: str, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def _caught_up(streams: StreamsConfig, topic: str, groups: tuple[str, ...]) -> bool:
    reader = OffsetReader(streams)
    try:
        ends = reader.end_offsets(topic)
    finally:
        reader.close()
    for group in groups:
        committed = group_offsets(streams, group)
        if any(committed.get((topic, p), 0) < end for p, end in ends.items()):
            return False
    return True


def test_no_record_stops_the_service(service: CliService) -> None:
    """Every poison shape that once stopped the service, and a fuzzed batch (random JSON values in
    every field, random bytes, random text, Arrow records of the right type with random values),
    on every input topic of every actor. The service stays up, no actor restarts, every record is
    accounted for, and every dead letter says what was wrong in the record's terms."""
    streams = _streams(service)
    rng = random.Random(20)
    sent: dict[str, dict[int, tuple[int, int, bytes | None]]] = defaultdict(dict)  # topic -> index -> where

    def delivered(topic: str, index: int) -> Callable[[object, object], None]:
        def report(err: object, msg: object) -> None:
            assert err is None, err
            sent[topic][index] = (msg.partition(), msg.offset(), msg.value())  # type: ignore[attr-defined]

        return report

    foreign = ForeignProducer({"bootstrap.servers": streams.bootstrap_servers, "message.max.bytes": 8_000_000})
    for i, value in enumerate(list(POISON_DOCS.values()) + random_documents(rng, 60)):
        foreign.produce("docs.raw", value, key=b"fuzz", on_delivery=delivered("docs.raw", i))
    garbage_of: dict[str, set[int]] = {}  # the undecodable messages' indices per topic
    for topic, record_type in RECORD_OF.items():
        bad = garbage(record_type, rng)
        garbage_of[topic] = set(range(len(bad)))
        for i, (value, headers) in enumerate(bad + random_records(record_type, rng, 12)):
            foreign.produce(topic, value, key=b"fuzz", headers=headers, on_delivery=delivered(topic, i))
    assert foreign.flush(30) == 0
    start = time.monotonic()
    wait_for(lambda: _caught_up(streams, "docs.raw", ("longtide-ingest",)), 120, "ingest past every document")
    for topic, groups in CONSUMERS.items():
        processors = tuple(g for g in groups if g != "longtide-learner")  # the learner commits at checkpoints
        wait_for(lambda t=topic, g=processors: _caught_up(streams, t, g), 180, f"{processors} past {topic}")
    print(f"every consumer past the fuzz {time.monotonic() - start:.0f} s after it was sent")

    letters = [r for m in read_all(streams, "dlq", idle_ms=1000) for r in decode(m.value, DeadLetter, m.headers)]
    by_group: dict[tuple[str, str], set[int]] = defaultdict(set)
    for letter in letters:
        by_group[(letter.consumer_group, letter.source_topic)].add(letter.source_offset)
    # docs.raw: exactly the messages ingest cannot take are dead-lettered, the rest are documents
    expected_bad, expected_docs = set(), set()
    for partition, offset, value in sent["docs.raw"].values():
        try:
            raws = parse_raw(Message("docs.raw", partition, offset, b"fuzz", value, []))  # type: ignore[arg-type]
            for raw in raws:
                check_sizes(raw, IngestConfig())
            expected_docs |= {content_id(r.collection, r.text) for r in raws}
        except SchemaError:
            expected_bad.add(offset)
    assert by_group[("longtide-ingest", "docs.raw")] == expected_bad
    assert len(expected_bad) >= len(POISON_DOCS) and expected_docs, "the fuzz held both"
    ingested = {d.doc_id for m in read_all(streams, "docs", idle_ms=1000) for d in _documents(m)}
    assert expected_docs <= ingested
    # every undecodable message on an internal topic: dead-lettered once by every group that reads it
    for topic, groups in CONSUMERS.items():
        garbage_offsets = {sent[topic][i][1] for i in garbage_of[topic]}
        for group in groups:
            wait_for(
                lambda g=group, t=topic, o=garbage_offsets: o <= _dead_lettered(streams, g, t),
                120,
                f"{group} dead-lettering the garbage on {topic}",
            )
    # reasons a person can read: the field, what it expects, what came; never Python's own words
    fresh = [lt for lt in letters if lt.original_key == b"fuzz"]
    for letter in fresh:
        assert (
            letter.dead_letter_id
            == f"{letter.consumer_group}/{letter.source_topic}/{letter.source_partition}/{letter.source_offset}"
        )
        for python in ("Traceback", "object has no attribute", "__init__()", "could not handle this record"):
            assert python not in letter.error, letter.error
    reasons = {letter.error for letter in fresh if letter.source_topic == "docs.raw"}
    for shape in (
        "lone surrogate \\ud800",
        "attrs: expected an object of strings, got an array",
        "no value (a tombstone",
        "text: missing",
        "nested too deeply",
        "over ingest.max_attrs_bytes",
        "expected a string, got a number",
    ):
        assert any(shape in r for r in reasons), (shape, sorted(reasons)[:20])
    # the policy readers passed over what they could not read, and said so
    state = service.state()
    rollout = _scrape(state["endpoints"]["rollout-0"])
    assert (_sample(rollout, "longtide_rollout_policy_records_skipped_total", reason="undecodable") or 0) >= 6
    status = cli("status", "--run-dir", str(service.run_dir))
    assert status.returncode == 0, status.stderr
    assert "policy records passed over" in status.stdout and "undecodable" in status.stdout, status.stdout
    assert cli("status", "--json", "--run-dir", str(service.run_dir)).returncode == 0
    assert service.alive() and set(state["restarts"].values()) == {0}, (state["restarts"], service.log())


def _documents(message: Message) -> list[Document]:
    try:
        return decode(message.value, Document, message.headers)
    except SchemaError:
        return []  # the fuzz's own garbage on docs


def _dead_lettered(streams: StreamsConfig, group: str, topic: str) -> set[int]:
    found = set()
    for message in read_all(streams, "dlq", idle_ms=500):
        for letter in decode(message.value, DeadLetter, message.headers):
            if letter.consumer_group == group and letter.source_topic == topic:
                found.add(letter.source_offset)
    return found


def test_memory_answers_a_collection_ingested_by_the_cli(service: CliService, tmp_path: Path) -> None:
    """A collection sent with `longtide ingest`, then asked about with `longtide ask` (which waits
    while the question's memory reads the collection): answered from memory, with the
    collection's progress on the memory actor's endpoint."""
    world = make_world(97, 8)
    notes = tmp_path / "ops-check.jsonl"
    notes.write_text("".join(json.dumps({"text": world.document(e)}) + "\n" for e in world.entities))
    target = world.entities[-1]
    sent = time.monotonic()
    assert cli("ingest", str(notes), "--collection", "ops-check", "--run-dir", str(service.run_dir)).returncode == 0
    asked = cli(
        "ask", "ops-check", f"{target} color", "--run-dir", str(service.run_dir), "--timeout", "170", timeout=180
    )
    latency = time.monotonic() - sent
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    print(
        f"ingest -> answer from memory in {latency:.1f} s: {answer['answer']!r} (truth {world.lookup(target, 'color')!r}); "
        f"memory {answer['memory']}"
    )
    assert answer["status"] == "answered" and answer["memory"]["text"]
    assert answer["documents"]["count"] == 8
    assert latency < 60, "an answer within a minute of the documents (README: measured 2.5 s)"
    memory = service.state()["endpoints"]["memory-0"]
    wait_for(
        lambda: _sample(_scrape(memory), "longtide_memory_collection_documents_read", collection="ops-check") == 8,
        30,
        "the collection's progress series",
    )


def test_a_second_service_in_a_running_services_run_dir_is_refused_in_one_line(service: CliService) -> None:
    refused = cli("run", f"--run_dir={service.run_dir}", "--config", "ops/configs/demo.yaml", timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert f"run_dir: a service (pid {service.pid}) is already running in {service.run_dir}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert service.alive() and (service.state() or {}).get("pid") == service.pid, "the running one is untouched"


def test_nothing_listens_beyond_loopback(service: CliService) -> None:
    """Every socket any process of the service listens on (broker, Ray's GCS, raylet, workers and
    agents, metrics endpoints, the memory endpoint, the weight store) is on loopback."""
    open_to_all = []
    for proc in service.processes():
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.ip not in LOOPBACK:
                    open_to_all.append(f"{proc.name()} ({proc.pid}) on {conn.laddr.ip}:{conn.laddr.port}")
        except psutil.Error:
            continue
    assert not open_to_all, open_to_all


def test_processes_that_run_no_model_stay_small(service: CliService) -> None:
    """The launcher and the ingest worker import no model library and hold less than their bound;
    every process's RSS is printed (README, "Measured")."""
    names = {pid: actor for actor, pid in service.state()["pids"].items()} | {service.pid: "launcher (longtide run)"}
    rows = []
    for proc in service.processes():
        try:
            what = names.get(proc.pid) or " ".join(proc.cmdline())[:60]
            rows.append((proc.memory_info().rss / 2**20, proc.pid, what))
        except psutil.Error:
            continue
    for rss, pid, what in sorted(rows, reverse=True):
        print(f"{rss:8.0f} MB  {pid:>7}  {what}")
    print(f"{sum(r for r, _, _ in rows):8.0f} MB in {len(rows)} processes")
    launcher = psutil.Process(service.pid).memory_info().rss / 2**20
    ingest = service.worker("ingest-0")
    ingest_rss = ingest.memory_info().rss / 2**20
    assert launcher < RSS_BOUND_MB["launcher"], launcher
    assert ingest_rss < RSS_BOUND_MB["ingest-0"], ingest_rss
    for proc in (psutil.Process(service.pid), ingest):
        libraries = {m.path for m in proc.memory_maps()}
        assert not [p for p in libraries if "/torch/" in p or "/vllm/" in p], f"{proc.pid} maps a model library"


def test_a_stalled_actor_is_restarted_with_its_reason(service: CliService) -> None:
    """The reward worker frozen (SIGSTOP): it answers no health check, and after
    `supervision.stall_s` it is restarted, counted as unresponsive."""
    worker = service.worker("reward-0")
    before = service.state()["restarts"]["reward-0"]
    worker.suspend()
    frozen = time.monotonic()
    try:
        wait_for(
            lambda: service.state()["restarts"]["reward-0"] == before + 1, 150, "the frozen reward worker restarted"
        )
    finally:
        if worker.is_running():
            worker.resume()
    print(f"SIGSTOP of the reward worker -> restarted as unresponsive after {time.monotonic() - frozen:.1f} s")
    launcher = _scrape(service.state()["endpoints"]["launcher"])
    assert (_sample(launcher, "longtide_reward_restarts_total", actor="reward-0", reason="unresponsive") or 0) >= 1
    wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 30, "the frozen process gone")
    assert service.alive()


def test_kill_9_of_the_vllm_rollout_worker_restarts_it_and_the_service_goes_on(
    service: CliService, tmp_path: Path
) -> None:
    """`kill -9` of the rollout worker (vLLM, building its engine again takes a while) under
    `longtide run`: the CLI's own status lines and the supervisor keep going, the actor comes back
    on vLLM and generates again, and no engine process is left behind."""
    _ingest_worlds(service, range(8), tmp_path)  # tasks to generate for
    old = service.worker("rollout-0")
    assert any("/vllm/" in m.path for m in old.memory_maps()), "the rollout worker runs vLLM"
    children = old.children(recursive=True)  # none on CPU (the engine runs in the worker); on GPUs, vLLM's
    before = service.state()["restarts"]["rollout-0"]
    old.kill()
    killed = time.monotonic()
    wait_for(lambda: service.state()["restarts"]["rollout-0"] == before + 1, 120, "the rollout restart")
    wait_for(lambda: service.worker("rollout-0").pid != old.pid, 60, "a new rollout worker")
    new = service.worker("rollout-0")
    address = service.state()["endpoints"]["rollout-0"]

    def generating() -> bool:
        try:
            return (_sample(_scrape(address), "longtide_rollout_samples_total") or 0) > 0
        except OSError:
            return False

    wait_for(generating, 240, "the restarted rollout actor generating")
    print(f"kill -9 of the vLLM rollout worker -> generating again in {time.monotonic() - killed:.1f} s")
    assert service.alive(), service.log()
    assert any("/vllm/" in m.path for m in new.memory_maps())
    assert not psutil.pid_exists(old.pid) or psutil.Process(old.pid).status() == psutil.STATUS_ZOMBIE
    left = [f"{c.pid} {c.name()}" for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"the killed worker's processes live on: {left}"


def test_sigterm_stops_the_service_and_leaves_nothing_running(service: CliService) -> None:
    assert service.processes(), "the service is running"
    code = service.stop(timeout_s=180)
    assert code == 130, service.log()
    wait_for(lambda: not service.processes(), 30, "every process of the service gone")
    assert service.state() is None, "state.json removed"


def test_a_stop_during_start_up_leaves_nothing_running(tmp_path: Path) -> None:
    """SIGTERM while the rollout worker builds its vLLM engine, and a second, impatient one a
    moment later: the stop completes and nothing of the service is left."""
    starting = CliService(tmp_path / "run", "--learner.rl_steps=0", "--supervision.poll_s=1").start()
    try:
        wait_for(lambda: bool(starting.loading("/vllm/")), 180, "a worker building a vLLM engine")
        starting.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping (signal 15)" in starting.log(), 30, "the first signal taken")
        if starting.alive():  # (the stop may be over already)
            starting.proc.send_signal(signal.SIGTERM)
        code = starting.proc.wait(180)
        wait_for(lambda: not starting.processes(), 30, "every process of the service gone")
        assert code == 130, starting.log()
    finally:
        left = starting.kill_leftovers()
        assert not left, f"left behind: {left}"
