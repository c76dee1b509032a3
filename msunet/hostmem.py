"""Keep freed host memory in the process, so that XLA:CPU steps do not page-fault afresh.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh `mmap`
and returns it to the kernel on `free`. XLA:CPU allocates a step's intermediates anew for each
execution, so on the CPU every train step touches gigabytes of brand-new pages, each a page
fault and kernel time. TensorFlow's CPU allocator is malloc too; the benchmark suite runs
Keras/TF with and without this setting (`keras-tf-kept`; README, Benchmarks).

`keep_freed_memory()` tells glibc to grow one heap instead of mapping large blocks and never to
give freed memory back, so later steps reuse pages that are already mapped. The price: the
process keeps its peak memory until it exits, and fragmentation can grow the heap once, early
in training (the peak resident memory of each variant is in the full benchmark's results).
The command-line tools call it at start unless MSUNET_KEEP_FREED_MEMORY=0; library users may
call it themselves, before JAX runs anything.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV_SWITCH = "MSUNET_KEEP_FREED_MEMORY"

# <malloc.h> parameters of mallopt(3).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse; False (and no change) off glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # One arena: a thread's own arena maps blocks too big for it with mmap whatever the
    # settings; only the main arena grows its heap. A trim threshold of -1 never trims.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)


_SWITCH_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                  "0": False, "false": False, "no": False, "off": False}


def keep_freed_memory_unless_disabled() -> bool:
    """What the command-line tools call first: `keep_freed_memory()` unless the environment
    sets MSUNET_KEEP_FREED_MEMORY=0 (to trade the speed for a smaller resident size).

    Raises ValueError for a value that is neither on (1/true/yes/on) nor off (0/false/no/off).
    """
    value = os.environ.get(ENV_SWITCH, "1").strip().lower()
    if value not in _SWITCH_VALUES:
        raise ValueError(f"{ENV_SWITCH}={os.environ[ENV_SWITCH]!r}: expected 0/false/no/off to "
                         "turn keeping freed memory off, or 1/true/yes/on")
    return _SWITCH_VALUES[value] and keep_freed_memory()
