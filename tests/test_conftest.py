"""The test setup itself: in CI a skipped test fails the run."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("ci, code", [("true", 1), ("", 0)])
def test_a_skip_fails_the_run_only_in_ci(tmp_path, ci, code):
    test = tmp_path / "test_skipping.py"
    test.write_text("import pytest\n\ndef test_needs_something():\n"
                    "    pytest.skip('no samples here')\n")
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(test)], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "CI": ci}, timeout=300)
    assert process.returncode == code, process.stdout[-2000:]
    assert ("count as failures" in process.stdout) == (ci == "true")
