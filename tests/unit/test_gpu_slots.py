"""GPU slots (forgetflow/gpu_slots.py): lock files that die with their holder, a wait that a signal ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from forgetflow.gpu_slots import gpu_slot, holders

HOLD = textwrap.dedent("""
    import sys, time
    from forgetflow.gpu_slots import gpu_slot
    with gpu_slot(sys.argv[1], 1):
        print("held", flush=True)
        time.sleep(600)
""")


def _holder(folder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_leaves_no_slot_behind(tmp_path):
    proc = _holder(tmp_path)
    try:
        assert holders(tmp_path, 1) == [proc.pid]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    start = time.monotonic()
    with gpu_slot(tmp_path, 1) as slot:  # free at once: the kernel dropped the dead holder's lock
        assert slot == 0 and holders(tmp_path, 1) == [os.getpid()]
    assert time.monotonic() - start < 2
    assert holders(tmp_path, 1) == [None]


def test_slots_count_and_a_waiter_can_be_stopped(tmp_path):
    proc = _holder(tmp_path)
    try:
        with gpu_slot(tmp_path, 2) as slot:  # a second slot is free
            assert slot == 1

        class Stop(Exception):
            pass

        calls = []

        def on_wait():
            calls.append(1)
            if len(calls) == 3:
                raise Stop  # what a lost lease (or a signal's exception) does to a waiting batch

        with pytest.raises(Stop):
            with gpu_slot(tmp_path, 1, on_wait=on_wait, poll_seconds=0.01):
                pass
    finally:
        proc.kill()
        proc.wait()
