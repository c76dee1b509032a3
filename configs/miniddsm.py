"""The paper's setup on real Mini-DDSM mammograms, for a GPU host.

MultiResUNet at full width (32 filters in the first stage, alpha 1.67), 256x256 inputs, batch 8,
Adam 1e-3 (Keras defaults otherwise), pixel-wise binary cross-entropy, early stopping on the
validation loss. Images are cropped to the breast, mirrored to the left, resized and CLAHE'd
once into the cache; patients are split 70/15/15 into train/val/test.

    python -m msunet.prepare --config configs/miniddsm.py --workdir runs/miniddsm \\
        --config.data.root=/data/miniddsm2
    python -m msunet.train --config configs/miniddsm.py --workdir runs/miniddsm \\
        --config.data.root=/data/miniddsm2

`/data/miniddsm2` is the Kaggle download (or either of its trees; the PNG-16 tree is used when
both are there). Expected: `runs/miniddsm/cache/<fingerprint>/` with every image at 256x256,
`splits.json` with the patient split (the test patients for evaluation), then training that
validates every 500 steps, keeps the best checkpoint by validation foreground IoU in
`runs/miniddsm/best/` and stops when the validation loss has not improved for 10 validations.
Not run to convergence here: it was only checked end to end on the 51-image sample
(`../shared/data/mammo_samples`) with the smoke model on a 2-core CPU, so no accuracy is
claimed for it.
"""

from msunet.config import base_config


def get_config():
    config = base_config()
    config.model.name = "multiresunet"
    config.model.base_filters = 32
    config.model.alpha = 1.67
    config.data.source = "miniddsm"
    config.data.root = ""  # give --config.data.root=/path/to/miniddsm2
    config.data.image_size = 256
    config.data.crop_breast = True
    config.data.canonical_side = "left"
    config.data.val_fraction = 0.15
    config.data.test_fraction = 0.15
    config.data.num_threads = 8  # reads come from the cache: threads keep up on a 16-core host
    config.data.num_workers = 0
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 8
    config.train.eval_batch_size = 16
    config.train.num_steps = 100_000  # an upper bound: early stopping ends the run first
    config.train.log_every = 100
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.early_stopping.patience = 10
    return config
