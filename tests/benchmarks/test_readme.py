"""benchmarks.readme: the README's results blocks are the committed results files."""

import pytest

from benchmarks import readme


def test_the_readme_holds_the_committed_results():
    text = (readme.REPO / "README.md").read_text()
    assert text.count("<!-- results: ") >= 4, "the benchmark tables are results blocks"
    assert readme.render(text) == text, "run python -m benchmarks.readme"


def test_a_block_is_replaced_by_its_file_and_a_missing_file_is_named(tmp_path):
    (tmp_path / "speed.md").write_text("| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- results: speed.md -->\nold table\n<!-- end results -->\noutro\n"
    assert readme.render(text, tmp_path) == (
        "intro\n<!-- results: speed.md -->\n| a |\n|---|\n| 1 |\n<!-- end results -->\noutro\n")
    with pytest.raises(FileNotFoundError, match="gone.md"):
        readme.render(text.replace("speed.md", "gone.md"), tmp_path)
