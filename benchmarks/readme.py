"""Copy the benchmark results' tables into the README, so no number there is typed by hand.

    python -m benchmarks.readme            # rewrite README.md's results blocks
    python -m benchmarks.readme --check    # exit 1 if a block differs from its results file

A block is everything between `<!-- results: NAME.md -->` and `<!-- end results -->`; it is
replaced by `benchmarks/results/NAME.md` as the benchmark wrote it. A test keeps the README in
step with the committed results.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BLOCK = re.compile(
    r"(<!-- results: (?P<name>[\w.-]+\.md) -->\n)(?P<body>.*?)(<!-- end results -->)", re.DOTALL)


def render(readme: str, results: pathlib.Path = RESULTS) -> str:
    """`readme` with each results block holding its results file's current text.

    Raises FileNotFoundError naming a block whose results file does not exist.
    """
    def fill(match: re.Match[str]) -> str:
        path = results / match["name"]
        if not path.is_file():
            raise FileNotFoundError(f"README block {match['name']}: no results file {path}")
        return f"{match[1]}{path.read_text().strip()}\n{match[4]}"

    return BLOCK.sub(fill, readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only report whether README.md is up to date")
    args = parser.parse_args()
    readme = REPO / "README.md"
    current = readme.read_text()
    rendered = render(current)
    if args.check:
        if rendered != current:
            sys.exit("README.md is out of date: run python -m benchmarks.readme")
        print("README.md results blocks are up to date")
    elif rendered != current:
        readme.write_text(rendered)
        print("README.md results blocks rewritten")


if __name__ == "__main__":
    main()
