"""Side-by-side publish and consume benchmark: pyliftbridge against the Go client and others.

    python benchmarks/compare.py            # the full comparison (~8 minutes)
    python benchmarks/compare.py --quick    # every contender once, tiny sizes
    python benchmarks/compare.py --quick --python .venv/bin/python \
        --pypy .venv-pypy/bin/python        # the same on the project's venvs (CI)

It starts one Liftbridge node (``pyliftbridge.testing``), builds the Go
contender (``benchmarks/go``, go-liftbridge at the version pinned in its
go.mod) and the contenders' virtual environments under ``benchmarks/.build``
(CPython with pyliftbridge, grpcio and gufo-liftbridge; PyPy with
pyliftbridge), then runs every contender in its own process against that
server, the same settings for all. Contenders run in rounds, in a rotating
order, and each row's ratio to Go is the median of per-round ratios against
the Go run of the same round: the figures of a shared, noisy machine drift,
their ratios much less.

For each run it also measures CPU: the contender's own (process time over
its measured phase, which it reports) and the server's (the Liftbridge
process, which embeds NATS, over the whole contender run), both per message.

Scenarios (100 000 messages of 256 B, ack LEADER, 1024 in flight unless said):
publish pipelined; publish one at a time waiting for each ack (latency);
consume a pre-filled stream; message sizes 16 B to 64 KiB; 4 partitions with
the key partitioner; ack ALL. It prints one table and writes JSON
(``--json FILE``, default ``benchmarks/results/compare-<time>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "benchmarks" / ".build"
CONTENDERS = ROOT / "benchmarks" / "contenders"
GO_BINARY = BUILD / "lbbench"
#: Distinct keys in the partitioned scenario.
KEYS = 1000


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- building the contenders --------------------------------------------------


def build_go() -> None:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    log(f"building the Go contender with {go} ...")
    subprocess.run(
        [go, "build", "-o", str(GO_BINARY), "."], cwd=ROOT / "benchmarks" / "go", check=True
    )


def make_venv(name: str, interpreter: str, packages: Sequence[str]) -> Path | None:
    """A venv under .build with the project and ``packages``; None if the interpreter is missing."""
    found = shutil.which(interpreter)
    if found is None:
        log(f"{interpreter} not found: its contenders are skipped")
        return None
    venv = BUILD / name
    python = venv / "bin" / "python"
    stamp = venv / ".stamp"
    project = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    want = " ".join([project, *packages])
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    log(f"setting up {venv} ({interpreter}) ...")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([found, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--prefer-binary"]
    # The cli extra: pyliftbridge's rows are `pyliftbridge bench` runs.
    subprocess.run([*pip, "-e", f"{ROOT}[cli]", *packages], check=True)
    stamp.write_text(want)
    return python


# -- contenders -----------------------------------------------------------------


@dataclass
class Contender:
    """One client under test: how to run it, and in which scenarios it takes part."""

    name: str
    argv: list[str]
    scenarios: set[str]
    #: "go", "bench" (``pyliftbridge bench``) or "python" (benchmarks/contenders/).
    kind: str = "python"

    def command(self, settings: dict[str, Any]) -> list[str]:
        if self.kind == "bench":
            return [*self.argv, *_bench_flags(settings)]
        dash = "-" if self.kind == "go" else "--"
        args = [*self.argv]
        for key, value in settings.items():
            args += [dash + key.replace("_", "-"), str(value)]
        return args


def _bench_flags(settings: dict[str, Any]) -> list[str]:
    """The same run as ``pyliftbridge bench`` options (the CLI's own measuring code)."""
    mode = settings["mode"]
    flags = ["--json", "--mode", "consume" if mode == "consume" else "publish"]
    if mode == "sync":
        flags.append("--sync")
    if mode != "consume":
        flags.append("--no-verify")  # the Go row does not read back either
    for key in ("brokers", "stream", "messages", "size", "window", "ack_policy"):
        flags += ["--" + key.replace("_", "-"), str(settings[key])]
    if settings["partitions"] > 1:
        flags += ["--partitions", str(settings["partitions"]), "--key-partitioner"]
        flags += ["--keys", str(settings.get("keys", KEYS))]
    return flags


def contenders(cpython: Path | None, pypy: Path | None, grpcio: bool) -> list[Contender]:
    every = {"publish", "sync", "consume", "sizes", "partitions", "ack-all"}
    out = [Contender("go-liftbridge", [str(GO_BINARY)], every, kind="go")]
    for python, label in ((cpython, "CPython"), (pypy, "PyPy")):
        if python is None:
            continue
        bench = [str(python), "-m", "pyliftbridge", "bench"]
        out.append(Contender(f"Client, {label}", [*bench, "--client", "sync"], every, "bench"))
        out.append(
            Contender(
                f"AsyncClient, {label}",
                [*bench, "--client", "async"],
                every - {"sync"} if label == "PyPy" else every,
                "bench",
            )
        )
    if cpython is not None and grpcio:
        for name, script, module in (
            ("gufo-liftbridge (grpcio)", "gufo_contender.py", "gufo.liftbridge"),
            ("bare grpcio pipeline", "grpcio_contender.py", "grpc"),
        ):
            if not _importable(cpython, module):
                log(f"{name}: {module} is not installed for {cpython}; its rows are skipped")
                continue
            out.append(
                Contender(name, [str(cpython), str(CONTENDERS / script)], {"publish", "consume"})
            )
    return out


def _importable(python: Path, module: str) -> bool:
    probe = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, check=False
    )
    return probe.returncode == 0


# -- measuring --------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(work_dir: Path) -> list[int]:
    """Processes whose command line names the server's work dir (Liftbridge, NATS)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if str(work_dir).encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


@dataclass
class Run:
    scenario: str
    label: str
    contender: str
    round: int
    result: dict[str, Any] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    error: str = ""


def run_one(command: list[str], pids: list[int], timeout: float) -> tuple[dict[str, Any], float]:
    before = sum(process_cpu_seconds(p) for p in pids)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    after = sum(process_cpu_seconds(p) for p in pids)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"])
    return json.loads(proc.stdout.strip().splitlines()[-1]), after - before


# -- scenarios ---------------------------------------------------------------------


def scenarios(quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(scenario, label, settings) in the order they run."""
    n = 2000 if quick else 100_000
    base = {"messages": n, "size": 256, "window": 1024, "ack_policy": "leader", "partitions": 1}
    keyed = {"partitions": 4, "keys": KEYS}
    out = [
        ("publish", "publish 256 B pipelined", {**base, "mode": "publish"}),
        (
            "sync",
            "publish 256 B, wait for each ack",
            {**base, "mode": "sync", "messages": 200 if quick else 3000},
        ),
        ("consume", "consume a pre-filled stream", {**base, "mode": "consume"}),
    ]
    for size in (16, 256, 4096, 65536):
        count = max(200, min(n, (20 if quick else 400) * 1024 * 1024 // (size * 40)))
        out.append(
            (
                "sizes",
                f"publish {size} B",
                {**base, "mode": "publish", "size": size, "messages": count},
            )
        )
    out.append(("partitions", "publish, 4 partitions by key", {**base, "mode": "publish", **keyed}))
    out.append(("ack-all", "publish, ack ALL", {**base, "mode": "publish", "ack_policy": "all"}))
    return out


def fill_stream(address: str, stream: str, messages: int, pids: list[int]) -> None:
    log(f"filling {stream} with {messages} messages for the consumers ...")
    command = Contender("go", [str(GO_BINARY)], set(), kind="go").command(
        {"brokers": address, "stream": stream, "mode": "publish", "messages": messages, "size": 256}
    )
    run_one(command, pids, 300)


def run_all(args: argparse.Namespace, address: str, pids: list[int]) -> list[Run]:
    runs: list[Run] = []
    consume_stream = f"consume-{uuid.uuid4().hex[:8]}"
    filled = False
    everyone = contenders(args.cpython, args.pypy, not args.no_grpcio)
    rounds = 1 if args.quick else args.rounds
    for scenario, label, settings in scenarios(args.quick):
        if args.only and scenario not in args.only:
            continue
        taking_part = [c for c in everyone if scenario in c.scenarios]
        if scenario == "sizes" or scenario not in ("publish", "consume", "sync"):
            # Fewer contenders where the question is the shape, not the field.
            taking_part = [c for c in taking_part if "gufo" not in c.name and "bare" not in c.name]
        if scenario == "consume" and not filled:
            fill_stream(address, consume_stream, settings["messages"], pids)
            filled = True
        for r in range(rounds):
            # Rotate the order so no contender always runs first or last.
            order = taking_part[r % len(taking_part) :] + taking_part[: r % len(taking_part)]
            for contender in order:
                stream = (
                    consume_stream if scenario == "consume" else (f"bench-{uuid.uuid4().hex[:10]}")
                )
                command = contender.command({**settings, "brokers": address, "stream": stream})
                run = Run(scenario, label, contender.name, r)
                try:
                    run.result, run.server_cpu_seconds = run_one(command, pids, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    run.error = str(exc)
                runs.append(run)
                log(
                    f"  {label:36s} {contender.name:28s} round {r + 1}: "
                    + (
                        f"{run.result['messages_per_second']:9.0f} msg/s"
                        if not run.error
                        else f"FAILED {run.error}"
                    )
                )
    return runs


# -- reporting ------------------------------------------------------------------------


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    by_label: dict[str, list[Run]] = {}
    for run in runs:
        by_label.setdefault(run.label, []).append(run)
    for label, group in by_label.items():
        go = {r.round: r for r in group if r.contender == "go-liftbridge" and not r.error}
        names = list(dict.fromkeys(r.contender for r in group))
        for name in names:
            mine = [r for r in group if r.contender == name]
            ok = [r for r in mine if not r.error]
            row: dict[str, Any] = {
                "scenario": mine[0].scenario,
                "label": label,
                "contender": name,
                "runs": len(mine),
                "failed": len(mine) - len(ok),
            }
            if ok:
                res = [r.result for r in ok]
                n = [x["messages"] for x in res]
                row["msgs_per_s"] = statistics.median(x["messages_per_second"] for x in res)
                # From the counts, not each contender's own unit (MB or MiB).
                row["mb_per_s"] = statistics.median(
                    x["messages"] * x["message_size"] / x["duration"] / 1e6 for x in res
                )
                row["client_us_per_msg"] = statistics.median(
                    x["cpu_seconds"] / m * 1e6 for x, m in zip(res, n)
                )
                row["server_us_per_msg"] = statistics.median(
                    r.server_cpu_seconds / m * 1e6 for r, m in zip(ok, n)
                )
                p50 = [(x.get("latency_ms") or {}).get("p50", 0.0) for x in res]
                row["p50_ms"] = statistics.median(p50)
                ratios = [
                    r.result["messages_per_second"] / go[r.round].result["messages_per_second"]
                    for r in ok
                    if r.round in go
                ]
                row["x_go"] = statistics.median(ratios) if ratios else None
                # Publishes that failed (ack timeouts...) are part of the figure: shown.
                row["errors"] = sum(int(x.get("errors") or 0) for x in res)
                row["x_go_range"] = [min(ratios), max(ratios)] if ratios else None
            else:
                row["error"] = mine[0].error
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | contender | msg/s | MB/s | x Go | client µs/msg | server µs/msg "
        "| p50 ms | errors |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['label']} | {row['contender']} | failed: {row['error']} | | | | | | |"
            )
            continue
        ratio = "" if row["x_go"] is None else f"{row['x_go']:.2f}"
        p50 = f"{row['p50_ms']:.2f}" if row["p50_ms"] else ""
        rate = f"{row['msgs_per_s']:,.0f}".replace(",", " ")
        lines.append(
            f"| {row['label']} | {row['contender']} | {rate} "
            f"| {row['mb_per_s']:.1f} | {ratio} | {row['client_us_per_msg']:.1f} "
            f"| {row['server_us_per_msg']:.1f} | {p50} | {row['errors'] or ''} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="scenarios to run (default: all)")
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--no-pypy", action="store_true", help="leave PyPy out")
    parser.add_argument(
        "--python",
        type=Path,
        help="CPython with pyliftbridge[cli] to use instead of making "
        "benchmarks/.build/venv-cpython (gufo-liftbridge and grpcio rows run only where "
        "they are installed)",
    )
    parser.add_argument(
        "--pypy",
        type=Path,
        help="PyPy with pyliftbridge[cli] to use instead of making benchmarks/.build/venv-pypy",
    )
    parser.add_argument(
        "--no-grpcio",
        action="store_true",
        help="leave gufo-liftbridge and the bare grpcio pipeline out",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    BUILD.mkdir(parents=True, exist_ok=True)
    build_go()
    extra = [] if args.no_grpcio else ["grpcio", "gufo-liftbridge"]
    args.cpython = args.python or make_venv("venv-cpython", sys.executable, extra)
    if args.no_pypy:
        args.pypy = None
    else:
        args.pypy = args.pypy or make_venv("venv-pypy", "pypy3", [])

    from pyliftbridge.testing import LiftbridgeServer

    with LiftbridgeServer() as server:
        pids = server_pids(server.work_dir)
        log(f"Liftbridge at {server.address} (pids {pids})")
        runs = run_all(args, server.address, pids)
    rows = summarize(runs)
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": time.monotonic() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "quick": args.quick,
        "rows": rows,
        "runs": [run.__dict__ for run in runs],
    }
    out = args.json or ROOT / "benchmarks" / "results" / time.strftime("compare-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(rows))
    log(f"JSON written to {out}; took {report['seconds']:.0f} s")
    failed = [r for r in rows if r.get("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
