"""MultiResUNet on the real Mini-DDSM samples the tests use, sized for a 2-core CPU.

The 51-image subset (13 patients, 23 images with a lesion) at `$MSUNET_SAMPLES`, or
`../shared/data/mammo_samples` beside the checkout, as the tests find it. Meant for patient-level
cross-validation, the honest estimate such a small set allows:

    python -m msunet.crossval --config configs/samples.py --workdir runs/samples-cv --folds 5

Each fold trains a narrow MultiResUNet (width 8) at 128x128 with early stopping on a validation
part of its training patients; `runs/samples-cv/crossval.md` holds the per-fold table. With so
few patients the numbers are an illustration of the workflow, not a measure of the model.
"""

import os
import pathlib

from msunet.config import base_config

SAMPLES = pathlib.Path(os.environ.get(
    "MSUNET_SAMPLES",
    pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mammo_samples"))


def get_config():
    config = base_config()
    config.model.name = "multiresunet"
    config.model.base_filters = 8
    config.model.head_bias_init = -3.0  # short runs start at a ~5 % lesion prior
    config.model.bn_momentum = 0.9
    config.data.source = "miniddsm"
    config.data.root = str(SAMPLES)
    config.data.image_size = 128
    config.data.val_fraction = 0.2
    config.train.batch_size = 4
    config.train.eval_batch_size = 8
    config.train.num_steps = 400  # an upper bound: early stopping may end a fold first
    config.train.log_every = 25
    config.train.eval_every = 50
    config.train.checkpoint_every = 50
    config.train.early_stopping.patience = 4
    return config
