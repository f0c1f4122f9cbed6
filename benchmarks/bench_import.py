"""What ``import pyliftbridge`` costs: time and peak memory, against the floor of its dependencies.

    python benchmarks/bench_import.py [--runs 15] [--json]

Each measurement is a fresh interpreter (``-X frozen_modules`` left as is, no
``-X importtime`` overhead) that times its own import with ``perf_counter``
and its CPU time (``process_time``, less sensitive to a busy machine), and
reports its peak RSS (``ru_maxrss``). The median of ``--runs`` runs is
reported for each case:

- ``bare``: the interpreter alone;
- ``floor``: what any h2 + protobuf client must import (``h2.connection``,
  ``google.protobuf.message_factory``, ``socket``, ``threading``);
- ``import``: ``import pyliftbridge``;
- ``client``: ``import pyliftbridge`` then ``pyliftbridge.Client`` (what a
  blocking program needs before it connects);
- ``asyncio``: the same for ``pyliftbridge.AsyncClient``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys

CASES = {
    "bare": "pass",
    "floor": "import h2.connection, google.protobuf.message_factory, socket, threading",
    "import": "import pyliftbridge",
    "client": "import pyliftbridge; pyliftbridge.Client",
    "asyncio": "import pyliftbridge; pyliftbridge.AsyncClient",
}

PROBE = """
import time, resource, sys
t, c = time.perf_counter(), time.process_time()
{code}
took, cpu = time.perf_counter() - t, time.process_time() - c
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(took, rss, len(sys.modules), "asyncio" in sys.modules, "ssl" in sys.modules, cpu)
"""


def measure(code: str, runs: int) -> dict[str, float | bool]:
    seconds, cpu, rss, modules = [], [], [], []
    flags = (False, False)
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(code=code)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        seconds.append(float(out[0]))
        cpu.append(float(out[5]))
        rss.append(int(out[1]) / 1024)  # KiB -> MiB (Linux)
        modules.append(int(out[2]))
        flags = (out[3] == "True", out[4] == "True")
    return {
        "ms": statistics.median(seconds) * 1000,
        "cpu_ms": statistics.median(cpu) * 1000,
        "peak_rss_mib": statistics.median(rss),
        "modules": statistics.median(modules),
        "asyncio_loaded": flags[0],
        "ssl_loaded": flags[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = {name: measure(code, args.runs) for name, code in CASES.items()}
    report = {
        "implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "runs": args.runs,
        "cases": results,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['implementation']} {report['python_version']}, median of {args.runs} runs")
    print(f"{'case':10s} {'ms':>8s} {'cpu ms':>8s} {'peak MiB':>9s} {'modules':>8s}  asyncio  ssl")
    for name, r in results.items():
        print(
            f"{name:10s} {r['ms']:8.1f} {r['cpu_ms']:8.1f} {r['peak_rss_mib']:9.1f} "
            f"{r['modules']:8.0f}"
            f"  {'yes' if r['asyncio_loaded'] else 'no':7s}  {'yes' if r['ssl_loaded'] else 'no'}"
        )


if __name__ == "__main__":
    main()
