"""Smoke test: a tiny MultiResUNet on 64x64 synthetic mammograms, a few steps (~1 min on CPU).

    python -m msunet.train --config configs/smoke.py --workdir /tmp/msunet-smoke

Expected: exits 0 after 8 steps with a checkpoint in checkpoints/ and best/, TensorBoard
events under tensorboard/ and a metrics.jsonl. The numbers mean nothing; it checks the plumbing.
"""

from msunet.config import base_config


def get_config():
    config = base_config()
    config.model.base_filters = 4
    config.model.head_bias_init = -3.0  # as configs/default.py: short runs start at the prior
    config.model.bn_momentum = 0.9
    config.data.image_size = 64
    config.data.num_train = 16
    config.data.num_val = 6
    config.data.num_test = 6
    config.train.batch_size = 4
    config.train.eval_batch_size = 4
    config.train.num_steps = 8
    config.train.log_every = 2
    config.train.eval_every = 4
    config.train.checkpoint_every = 4
    return config
