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

Kept memory has one trap: what XLA's compiler allocates and frees stays resident too, in pieces too
small for the step's temporaries, which XLA:CPU allocates as one block on top of them.
`CompiledAhead` compiles a jitted function before its first run and hands the compiler's freed
pages back (`release_freed_memory`) in between, so the process peaks at what the running step needs
(README, Benchmarks).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable
from typing import Any

import jax

ENV_SWITCH = "MSUNET_KEEP_FREED_MEMORY"

# <malloc.h> parameters of mallopt(3).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse; False (and no change) off glibc."""
    libc = _glibc()
    if libc is None:
        return False
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


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the kernel (glibc `malloc_trim(0)`), kept or not;
    False (and nothing done) off glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class CompiledAhead:
    """A jitted function compiled ahead of time for each new argument signature (pytree
    structure, shapes, dtypes, shardings), the compiler's freed memory released before the
    executable first runs. Called like the jitted function, donation included."""

    def __init__(self, jitted: Any) -> None:
        self.jitted = jitted
        self._executables: dict[Any, Callable[..., Any]] = {}

    @property
    def num_compiled(self) -> int:
        """How many argument signatures have been compiled; more than a loop's batch shapes
        means it recompiles silently."""
        return len(self._executables)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef = jax.tree.flatten((args, kwargs))
        signature = (treedef, tuple((jax.typeof(leaf), getattr(leaf, "sharding", None))
                                    for leaf in leaves))
        executable = self._executables.get(signature)
        if executable is None:
            executable = self.jitted.lower(*args, **kwargs).compile()
            self._executables[signature] = executable
            release_freed_memory()
        return executable(*args, **kwargs)
