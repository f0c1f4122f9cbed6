"""Coverage-guided fuzzing of the decoders with atheris (CPython only).

    python tests/fuzz/run_atheris.py --runs 125000            # every target, 1 000 000 cases
    python tests/fuzz/run_atheris.py --target envelope --runs 0 --seconds 600
    python tests/fuzz/run_atheris.py --combined --runs 4000   # all targets in one process (CI)

Each target of ``targets.py`` runs in a process of its own (libFuzzer ends
the process when it is done), instrumented over pyliftbridge, h2 and hpack.
A target that raises anything but a LiftbridgeError (or breaks one of its
bounds) is a crash: libFuzzer stops, writes the input to ``crash-*`` in the
current directory, and this script exits non-zero. At the end the script
prints the cases run per target and in total.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _fuzz_one(name: str, argv: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(HERE.parent))
    with atheris.instrument_imports(include=["pyliftbridge", "h2", "hpack", "fuzz"]):
        from fuzz.targets import TARGETS

    if name == "all":
        # One process for every target (saves the instrumented start-up of
        # each): the first byte picks the target.
        names = sorted(TARGETS)

        def target(data: bytes) -> None:
            if data:
                TARGETS[names[data[0] % len(names)]](data[1:])

    else:
        target = TARGETS[name]
    atheris.Setup([sys.argv[0], *argv], target)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000, help="cases per target (0: no limit)")
    parser.add_argument("--seconds", type=int, default=0, help="time limit per target (0: none)")
    parser.add_argument("--max-len", type=int, default=4096, help="largest input, bytes")
    parser.add_argument("--target", action="append", help="fuzz only this target (repeatable)")
    parser.add_argument(
        "--combined", action="store_true", help="all targets in one process (first byte picks)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    libfuzzer = [f"-max_len={args.max_len}", "-print_final_stats=1"]
    if args.runs:
        libfuzzer.append(f"-runs={args.runs}")
    if args.seconds:
        libfuzzer.append(f"-max_total_time={args.seconds}")
    if args.one:
        _fuzz_one(args.one, libfuzzer)
        return 0

    sys.path.insert(0, str(HERE.parent))
    from fuzz.targets import TARGETS

    names = ["all"] if args.combined else args.target or sorted(TARGETS)
    total = 0
    failed = []
    for name in names:
        start = time.monotonic()
        cmd = [sys.executable, __file__, "--one", name, "--max-len", str(args.max_len)]
        cmd += ["--runs", str(args.runs), "--seconds", str(args.seconds)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        output = proc.stdout + proc.stderr
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
        count = int(runs[-1]) if runs else 0
        total += count
        took = time.monotonic() - start
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"{name:20} {count:>10} cases  {took:7.1f}s  {status}", flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(output[-4000:])
    fuzzed = len(TARGETS) if args.combined else len(names)
    print(f"targets fuzzed: {fuzzed}; cases in total: {total}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
