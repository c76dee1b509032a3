"""keep_freed_memory: a freed large block is reused without new page faults (glibc only)."""

import platform
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="keep_freed_memory tunes glibc's malloc; it is a no-op elsewhere")

# Allocate, touch and free a 256 MiB block twice; print the page faults of the second round.
_PROBE = """
import ctypes, os, resource, sys
from msunet import hostmem
kept = hostmem.keep_freed_memory_unless_disabled()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 * 2**20

def touch_and_free():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)

touch_and_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_and_free()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_round_faults(switch: str) -> tuple[str, int]:
    process = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True,
                             text=True, timeout=120,
                             env={"PATH": "", "MSUNET_KEEP_FREED_MEMORY": switch})
    assert process.returncode == 0, process.stderr
    kept, faults = process.stdout.split()
    return kept, int(faults)


def test_kept_memory_is_reused_without_page_faults():
    kept, faults = _second_round_faults("1")
    assert kept == "True"
    assert faults < 1000  # 256 MiB of fresh 4 KiB pages would be 65,536 faults


def test_switch_off_leaves_malloc_alone():
    kept, faults = _second_round_faults("0")
    assert kept == "False"
    assert faults > 10_000  # glibc maps the block afresh and faults it in again


def test_unreadable_switch_is_a_clear_error():
    process = subprocess.run(
        [sys.executable, "-m", "msunet.train", "--config", "configs/smoke.py", "--workdir",
         "unused"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={"PATH": "", "JAX_PLATFORMS": "cpu", "MSUNET_KEEP_FREED_MEMORY": "maybe"})
    assert process.returncode != 0
    assert "error: MSUNET_KEEP_FREED_MEMORY='maybe': expected 0/false/no/off" in process.stderr
    assert "Traceback" not in process.stderr
