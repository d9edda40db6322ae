"""Fault injection for crash drills: ``FORGETFLOW_KILL_AT=<step>`` makes the process SIGKILL itself inside that step.

Each kill point sits inside a batch step, right after the step's first side effect (docs/operations.md,
"Crashes and leases", lists them), so a drill leaves exactly what a crash there would leave. Nothing
happens unless the variable is set; ``benchmarks/fault_injection.py`` and ``tests/flows/test_crash_recovery.py``
set it in the batch process they start. ``FORGETFLOW_STOP_AT=<step>`` sends SIGSTOP instead (the process
freezes, as a hung or paused machine would, until someone sends SIGCONT).
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "FORGETFLOW_KILL_AT"
STOP_ENV = "FORGETFLOW_STOP_AT"


def kill_point(step: str) -> None:
    """Die here (SIGKILL: no handler, no cleanup) when ``FORGETFLOW_KILL_AT`` names ``step``."""
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_ENV) == step:
        os.environ.pop(STOP_ENV)  # freeze once
        os.kill(os.getpid(), signal.SIGSTOP)
