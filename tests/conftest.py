"""Test setup: CPU JAX, a persistent compile cache shared with subprocesses, absl flags parsed,
and one smoke-trained workdir shared by the whole session (all xdist workers)."""

import fcntl
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# The real Mini-DDSM subset beside the checkout (CI always has it), or $MSUNET_SAMPLES.
SAMPLES = pathlib.Path(os.environ.get("MSUNET_SAMPLES",
                                      REPO.parent / "shared" / "data" / "mammo_samples"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
# Tests run tiny models for a few steps, so compiling dominates their time: LLVM at -O0 compiles
# faster and runs slower, a good trade here (never for the benchmarks' timings). Subprocesses
# inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# grain reads absl flags; outside absl.app.run they must be marked parsed (grain issue #1355).
flags.FLAGS.mark_as_parsed()


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m module args...` from the repository root, capturing its output."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_config():
    from configs.smoke import get_config

    return get_config()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, worker_id, smoke_config):
    """A workdir trained once per test session by `train_and_evaluate` with configs/smoke.py
    (8 steps: checkpoints at 4 and 8, a best checkpoint, metrics.jsonl, curves).

    Shared by every xdist worker (the first one to ask trains it, under a file lock), so it is
    read-only: a test that changes a workdir copies this one first (`copy_run`).
    """
    from msunet.training import train_and_evaluate

    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the folder all workers' temp dirs share
    workdir = root / "smoke_run"
    with open(root / "smoke_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (workdir / "TRAINED").exists():
            train_and_evaluate(smoke_config, workdir)
            (workdir / "TRAINED").touch()
    return workdir


@pytest.fixture(scope="session")
def sample_image():
    """One real Mini-DDSM mammogram of the samples (skipped, with the reason, where absent)."""
    images = sorted(path for path in SAMPLES.glob("*/*/*.png")
                    if "mask" not in path.stem.lower()) if SAMPLES.is_dir() else []
    if not images:
        pytest.skip(f"no Mini-DDSM samples at {SAMPLES} (set MSUNET_SAMPLES to their folder)")
    return images[0]


@pytest.fixture
def copy_run(smoke_run, tmp_path):
    """A private copy of the shared smoke run, for tests that write into a workdir."""
    import shutil

    return pathlib.Path(shutil.copytree(smoke_run, tmp_path / "run",
                                        ignore=shutil.ignore_patterns("TRAINED")))


def pytest_sessionfinish(session, exitstatus):
    """In CI (CI=true) a skipped test fails the run: CI has TensorFlow and the real samples, so
    a skip there means a test that silently stopped testing."""
    if os.environ.get("CI", "").lower() != "true" or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failures here:",
                            red=True)
        for report in skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""
            reporter.write_line(f"  {report.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
