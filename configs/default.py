"""Default: a narrow MultiResUNet on 128x128 built-in synthetic mammograms, minutes on 2 CPU cores.

    python -m msunet.train --config configs/default.py --workdir runs/default

The README's main command. Needs no download: it draws 512 training and 64 validation synthetic
mammograms, trains for 400 steps of batch 8 (about 6 epochs) with CLAHE and augmentation, and
keeps the best checkpoint by validation foreground IoU in runs/default/best/.

Its validation metrics land in runs/default/metrics.jsonl. What this recipe (width 8, BatchNorm
momentum 0.9, head offset -3) reaches when trained to convergence at 64x64, against the Keras
original, is measured by `python -m benchmarks.run --suite accuracy`
(benchmarks/results/accuracy.md).
"""

from msunet.config import base_config


def get_config():
    config = base_config()
    config.model.base_filters = 8
    config.model.head_bias_init = -3.0  # start at a ~5 % lesion prior, not p = 0.5
    config.model.bn_momentum = 0.9  # BN running statistics that settle within a short run
    config.data.image_size = 128
    config.data.num_train = 512
    config.data.num_val = 64
    config.data.num_test = 64
    config.train.num_steps = 400
    config.train.log_every = 10
    config.train.eval_every = 40
    config.train.checkpoint_every = 40
    return config
