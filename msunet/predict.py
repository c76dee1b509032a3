"""Lesion masks for mammograms of any size and bit depth:
`python -m msunet.predict --workdir DIR --input FILE_OR_DIR --output DIR`.

Written per input: `<stem>_mask.png` (0/255, the input's size), `<stem>_overlay.png` (lesion
outline in red on the image) and, with --probability, `<stem>_probability.png` (probability x
255). How the model is applied is `msunet.inference`; the files are `msunet.export`.

The files flow through three overlapping stages (`predict_files`): reader threads decode and
prepare the next images while the model runs on a batch of `train.eval_batch_size` prepared
images, and writer threads map finished predictions back to full size and write the PNGs
(`python -m benchmarks.predict_throughput` measures it on full-size 16-bit mammograms).
"""

from __future__ import annotations

import collections
import concurrent.futures
import pathlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, TypeVar

import numpy as np
from absl import flags

from msunet import cli, hostmem
from msunet.data.preprocess import Geometry
from msunet.data.readers import list_inputs, read_input
from msunet.export import save_prediction
from msunet.inference import Prediction, Predictor, load_variables
from msunet.workdir import Workdir

Item = TypeVar("Item")
Result = TypeVar("Result")


class Written(NamedTuple):
    """One input's prediction and the files written for it."""

    path: pathlib.Path
    image_shape: tuple[int, ...]
    prediction: Prediction
    files: dict[str, pathlib.Path]


def _ahead(pool: concurrent.futures.Executor, function: Callable[[Item], Result],
           items: Iterable[Item], depth: int) -> Iterator[Result]:
    """`map(function, items)` in `pool`, in order, with at most `depth` calls in flight (unlike
    `Executor.map`, which submits every item at once and would hold every decoded image)."""
    pending: collections.deque[concurrent.futures.Future[Result]] = collections.deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_files(predictor: Predictor, inputs: list[pathlib.Path], output: str | pathlib.Path,
                  probability: bool = False, readers: int = 2, writers: int = 2,
                  ) -> Iterator[Written]:
    """Predict and write every input, yielding each as its files are written, in input order.

    Decoding + preprocessing (`readers` threads), the model (this thread, batches of
    `train.eval_batch_size`, the last one padded so one compiled shape serves all) and
    restoring + writing (`writers` threads: the last batch's PNGs are written with the model
    done, so one writer would leave a core idle) overlap. Errors name the file and stop the run.
    """
    batch_size = predictor.config.train.eval_batch_size
    pad = len(inputs) > 1 and not predictor.config.eval.sliding_window

    def load(path: pathlib.Path) -> tuple[pathlib.Path, np.ndarray, np.ndarray, Geometry]:
        image = read_input(path)
        return (path, image, *predictor.prepare(image))

    def write(job: tuple[tuple[pathlib.Path, np.ndarray, np.ndarray, Geometry], np.ndarray]
              ) -> Written:
        (path, image, _, geometry), small = job
        prediction = predictor.restore(small, geometry)
        files = save_prediction(prediction, image, output, path.stem, probability)
        return Written(path, image.shape, prediction, files)

    with concurrent.futures.ThreadPoolExecutor(readers) as reading, \
            concurrent.futures.ThreadPoolExecutor(writers) as writing:
        loaded = _ahead(reading, load, inputs, depth=batch_size + readers)
        writes: collections.deque[concurrent.futures.Future[Written]] = collections.deque()
        for batch in _batches(loaded, batch_size):
            prepared = [item[2] for item in batch]
            padding = [np.zeros_like(prepared[0])] * (batch_size - len(batch)) if pad else []
            small = predictor.model_probabilities(prepared + padding)[:len(batch)]
            writes.extend(writing.submit(write, job) for job in zip(batch, small, strict=True))
            while writes and (writes[0].done() or len(writes) > batch_size):
                yield writes.popleft().result()
        while writes:
            yield writes.popleft().result()


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.predict`."""
    flags.DEFINE_string("workdir", None, "A training workdir (config.json and checkpoints).",
                        flag_values=values)
    flags.DEFINE_string("input", None, "A mammogram file, or a folder of them.",
                        flag_values=values)
    flags.DEFINE_string("output", None, "Folder for the masks and overlays.", flag_values=values)
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.",
                      flag_values=values)
    flags.DEFINE_boolean("probability", False, "Also write the probability map.",
                         flag_values=values)
    flags.DEFINE_boolean("tta_hflip", None, "Override eval.tta_hflip.", flag_values=values)
    flags.DEFINE_boolean("sliding_window", None, "Override eval.sliding_window.",
                         flag_values=values)
    flags.mark_flags_as_required(["workdir", "input", "output"], flag_values=values)


def main(argv: list[str]) -> None:
    """Predict every input and write its mask and overlay; exits non-zero on a bad input."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        hostmem.keep_freed_memory_unless_disabled()
        inputs = list_inputs(args.input)
        config = Workdir(args.workdir).load_config()
        for name in ("tta_hflip", "sliding_window"):
            if args[name].value is not None:
                config.eval[name] = args[name].value
        variables, step = load_variables(args.workdir, config, args.checkpoint)
        predictor = Predictor(variables, config)
        print(f"{config.model.name} from the {args.checkpoint} checkpoint (step {step}); "
              f"{len(inputs)} image(s)", flush=True)
        for done in predict_files(predictor, inputs, args.output, args.probability):
            height, width = done.image_shape[:2]
            mask = done.prediction.mask
            print(f"{done.path} -> {done.files['mask']}: {int(mask.sum())} lesion pixels "
                  f"({mask.mean():.2%} of {width}x{height})", flush=True)


if __name__ == "__main__":
    main(sys.argv)
