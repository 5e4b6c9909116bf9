"""``syncd.memory.return_large_buffers``: freed megabyte buffers go back to the system (glibc's mmap threshold
fixed), so a long pull's resident set does not keep what its pages used. Each case runs in a fresh
interpreter (the setting is process-wide) on Linux with glibc, as syncd's service and CI do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A pull in miniature: once a 16 MiB buffer has been freed (glibc then raises its threshold to 16 MiB), 40
# buffers of 1 MiB are made and freed, each followed by a small block that stays (a row kept, say).
WORKLOAD = """
import sys
from syncd.memory import return_large_buffers

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

set_ = return_large_buffers() if sys.argv[1] == "set" else None
big = bytearray(16 << 20)
del big
before = rss_mb()
held, kept = [], []
for _ in range(40):
    held.append(bytearray(1 << 20))
    kept.append(bytearray(2048))
held.clear()
print(set_, round(rss_mb() - before, 1))
"""


def _kept(mode: str, env: dict[str, str] | None = None) -> tuple[str, float]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], float(out[1])


def test_freed_megabyte_buffers_leave_the_resident_set() -> None:
    without = _kept("default")
    with_ = _kept("set")
    # Without it, the heap keeps what the buffers used (40 MiB); with it, they were mapped and unmapped.
    assert without[1] >= 20, without
    assert with_ == ("True", pytest.approx(0, abs=4)), with_


def test_an_operators_own_malloc_setting_is_left_alone() -> None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"}
    assert _kept("set", env)[0] == "False"
