"""Time how long the ``forgetflow`` CLI takes to start: ``--help`` must stay fast (no tool imported for it).

Usage (from the repository root):

    .venv/bin/python benchmarks/cli_startup.py [--runs 10] [--code PATH]

Each command runs ``--runs`` times in a fresh interpreter (``python -m forgetflow.cli``); the table shows the
fastest and the median wall time. The fastest run is the one to compare across versions: on a shared machine
the others measure the neighbours. ``--code`` points at another checkout (e.g. one at an older commit) to
compare with.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = [["--help"], ["request", "--help"], ["methods", "--json"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose forgetflow to time")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    print(f"forgetflow CLI start-up, {args.runs} runs each, code from {args.code}\n")
    print(f"| command | fastest s | median s |\n|---|---|---|")
    for command in COMMANDS:
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "forgetflow.cli", *command], env=env, cwd=args.code,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - start)
        print(f"| `forgetflow {' '.join(command)}` | {min(times):.2f} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
