"""A fixed mmap threshold gives large freed blocks back to the system: the steps a server's memory took at every
checkpoint and retrain."""

import platform
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# What a checkpoint does to the heap: a block of megabytes freed (glibc then serves blocks that size from the heap),
# then blocks of a megabyte with small long-lived objects allocated between them, then those blocks freed.
SCRIPT = """
import sys
from app.runtime.allocator import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

big = bytearray(16 << 20)
del big
before = rss_kb()
kept, blocks = [], []
for n in range(200):
    blocks.append(bytearray(1 << 20))
    kept.append(bytearray(600))
del blocks
print(rss_kb() - before)
"""


def _growth_kb(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="about glibc's allocator")
def test_freed_large_blocks_go_back_to_the_system_with_the_threshold_fixed():
    dynamic, fixed = _growth_kb("dynamic"), _growth_kb("fixed")
    assert dynamic > 150_000  # glibc's own: 200 MB of freed blocks still resident
    assert fixed < 20_000, (dynamic, fixed)
