"""keep_freed_memory: a freed large block is reused without new page faults; release_freed_memory
gives kept pages back; CompiledAhead runs as the jitted function it wraps (glibc only)."""

import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet import hostmem
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


# Kept memory: 64 touched 4 MiB blocks freed stay resident until released.
_RELEASE_PROBE = """
import ctypes
from msunet import hostmem

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

assert hostmem.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(4 * 2**20) for _ in range(64)]
for block in blocks:
    ctypes.memset(block, 1, 4 * 2**20)
for block in blocks:
    libc.free(block)
kept = resident_mb()
print(hostmem.release_freed_memory(), kept - resident_mb())
"""


def test_released_memory_leaves_the_process():
    process = subprocess.run([sys.executable, "-c", _RELEASE_PROBE], cwd=REPO,
                             capture_output=True, text=True, timeout=120, env={"PATH": ""})
    assert process.returncode == 0, process.stderr
    released, freed_mb = process.stdout.split()
    assert released == "True"
    assert float(freed_mb) > 200  # of the 256 MiB freed but kept


def test_compiled_ahead_runs_as_the_jitted_function_once_per_signature():
    compiled = hostmem.CompiledAhead(jax.jit(lambda x, scale: x * scale, donate_argnums=0))
    for size in (3, 3, 5):
        x = jnp.arange(size, dtype=jnp.float32)
        np.testing.assert_array_equal(compiled(x, 2.0), np.arange(size) * 2.0)
        assert x.is_deleted()  # donated, as the jitted function's argument would be
    assert compiled.num_compiled == 2  # sizes 3 and 5
    compiled(jnp.arange(3, dtype=jnp.int32), 2.0)
    assert compiled.num_compiled == 3  # a new dtype is a new signature
    np.testing.assert_array_equal(compiled(jnp.ones(2), scale=3.0), [3.0, 3.0])
