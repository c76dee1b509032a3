"""Test setup: CPU JAX, a persistent compile cache shared with subprocesses, absl flags parsed."""

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
