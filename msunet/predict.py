"""Lesion masks for mammograms of any size and bit depth:
`python -m msunet.predict --workdir DIR --input FILE_OR_DIR --output DIR`.

Written per input: `<stem>_mask.png` (0/255, the input's size), `<stem>_overlay.png` (lesion
outline in red on the image) and, with --probability, `<stem>_probability.png` (probability x
255). How the model is applied is `msunet.inference`; the files are `msunet.export`.
"""

from __future__ import annotations

import sys

from absl import flags

from msunet import cli, hostmem
from msunet.data.readers import list_inputs, read_input
from msunet.export import save_prediction
from msunet.inference import Predictor, load_variables
from msunet.workdir import Workdir


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
        for path in inputs:
            image = read_input(path)
            prediction = predictor(image)
            written = save_prediction(prediction, image, args.output, path.stem,
                                      args.probability)
            share = prediction.mask.mean()
            print(f"{path} -> {written['mask']}: {int(prediction.mask.sum())} lesion pixels "
                  f"({share:.2%} of {image.shape[1]}x{image.shape[0]})", flush=True)


if __name__ == "__main__":
    main(sys.argv)
