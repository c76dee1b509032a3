"""Training curves like the paper's Fig. 6: `python -m msunet.plot --workdir DIR`.

Reads `<workdir>/metrics.jsonl` (training rows carry `train_*` keys, validation rows `val_*`,
both an `epoch`) and draws loss, pixel accuracy and IoU for training and validation by epoch
into `<workdir>/training_curves.png`. IoU is drawn both as lesion (fg) IoU, solid, and as the
paper's 2-class mean IoU, dashed. Training calls this at its end.
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import flags

from msunet import cli
from msunet.workdir import Workdir

# (panel title, [(metric key without prefix, line style, label suffix)])
PANELS = (
    ("Loss (binary cross-entropy)", [("loss", "-", "")]),
    ("Pixel accuracy", [("accuracy", "-", "")]),
    ("IoU", [("fg_iou", "-", " fg IoU"), ("mean_iou_2class", "--", " 2-class mean IoU")]),
)


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, float]]:
    """The rows of a workdir's metrics.jsonl; FileNotFoundError names what is missing."""
    run = Workdir(workdir)
    if not run.root.is_dir():
        raise FileNotFoundError(f"workdir {run.root} does not exist")
    path = run.metrics_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no training has logged in {run.root}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curves(workdir: str | pathlib.Path,
                         output: str | pathlib.Path | None = None) -> pathlib.Path:
    """Draw loss, accuracy and IoU (train and val, by epoch) to a PNG and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = read_metrics(workdir)
    if not any(key.startswith(("train_", "val_")) for row in rows for key in row):
        raise ValueError(f"{Workdir(workdir).metrics_file} has no train_/val_ metrics")
    output = pathlib.Path(output) if output else Workdir(workdir).curves_file
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    for axis, (title, lines) in zip(axes, PANELS, strict=True):
        for prefix, color, name in (("train_", "tab:blue", "train"),
                                    ("val_", "tab:orange", "validation")):
            for key, style, suffix in lines:
                points = [(row["epoch"], row[prefix + key]) for row in rows
                          if prefix + key in row and "epoch" in row]
                if points:
                    epochs, values = zip(*points, strict=True)
                    axis.plot(epochs, values, style, color=color, marker=".",
                              label=name + suffix)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.plot`."""
    flags.DEFINE_string("workdir", None, "A training workdir with metrics.jsonl.",
                        flag_values=values)
    flags.DEFINE_string("output", None, "PNG path (default <workdir>/training_curves.png).",
                        flag_values=values)
    flags.mark_flags_as_required(["workdir"], flag_values=values)


def main(argv: list[str]) -> None:
    """Write the PNG and print its path; `error: ...` and a non-zero exit on failure."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        print(plot_training_curves(args.workdir, args.output))


if __name__ == "__main__":
    main(sys.argv)
