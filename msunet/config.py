"""The base configuration every file in configs/ starts from; each field is documented here.

Config files call `base_config()` and change what their experiment needs, so a field has one
default and one meaning. Any field is overridable on the command line, e.g.
`--config.optim.learning_rate=3e-4`.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """All fields with their defaults (the paper's MultiResUNet at 256x256, batch 8)."""
    config = ml_collections.ConfigDict()

    config.model = model = ml_collections.ConfigDict()
    model.name = "multiresunet"  # a name in msunet.models.MODELS: "multiresunet" or "unet"
    # The model class takes the fields below that it declares (msunet.state.create_model).
    model.base_filters = 32  # width of the first stage; doubles per stage (32 in the paper)
    model.alpha = 1.67  # MultiResBlock width multiplier (MultiResUNet only)
    model.in_channels = 1  # grey mammograms
    model.out_channels = 1  # one sigmoid output: lesion vs background
    model.dtype = "float32"  # compute dtype; "bfloat16" keeps params and BN statistics float32
    model.bn_momentum = 0.99  # Keras' BatchNorm momentum; ~0.9 for runs of a few hundred steps
    model.head_bias_init = 0.0  # initial logit offset; 0 = Keras, ~-3 starts at a 5 % lesion prior

    config.data = data = ml_collections.ConfigDict()
    data.source = "synthetic"  # a name in msunet.data.SOURCES: "synthetic" (built in, no
    # download), "miniddsm", "cbis", "folder"
    data.root = ""  # dataset folder for real sources (the images folder for "folder")
    data.masks_dir = ""  # "folder" only: masks with the same file stems as the images
    data.image_size = 256  # square model resolution; a multiple of 16
    data.num_train = 512  # synthetic images per split
    data.num_val = 64
    data.num_test = 64
    data.seed = 0  # which synthetic images are drawn
    data.clahe_clip_limit = 2.0  # CLAHE contrast limit; 0 disables CLAHE
    data.clahe_tile_grid = 8  # CLAHE tiles per side
    data.crop_breast = True  # crop to the breast (drops film border, label blobs) before resizing
    data.canonical_side = "left"  # mirror every breast to this side: "left", "right" or "" (never)
    data.val_fraction = 0.15  # real sources: share of patients (cases) in validation
    data.test_fraction = 0.15  # real sources: share of patients in the test split
    data.split_seed = 0  # seed of the patient-level split (saved to <workdir>/splits.json)
    data.on_bad_sample = "error"  # bad file: "error" stops naming it; "skip" warns and drops it
    data.cache_dir = ""  # preprocessed-image cache; "" = <workdir>/cache (real sources only)
    data.num_threads = 2  # grain reader threads (2 fits a 2-core machine; 8-16 on a GPU host)
    data.num_workers = 0  # grain worker processes; 0 = in-process (right for 2 cores)
    data.prefetch = 32  # grain prefetch buffer, in elements

    data.patch_size = 0  # >0: train on random patches of this size from image_size images
    data.patch_foreground_fraction = 0.5  # share of patches centred on a lesion pixel
    data.augment = augment = ml_collections.ConfigDict()  # training split only
    augment.hflip_prob = 0.5
    augment.vflip_prob = 0.5
    augment.rotation_prob = 0.5
    augment.rotation_degrees = 15.0  # uniform in [-d, d]
    augment.zoom_prob = 0.5
    augment.zoom_range = (0.9, 1.1)
    augment.contrast_prob = 0.5
    augment.contrast_range = (0.8, 1.2)
    augment.brightness_range = (-0.08, 0.08)  # shift as a fraction of 255

    config.optim = optim = ml_collections.ConfigDict()  # Adam with Keras' defaults
    optim.learning_rate = 1e-3
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.eps = 1e-7
    optim.keras_epsilon = True  # True: eps placed as Keras 3 does; False: as optax.adam (optim.py)

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 8  # global batch, split evenly over all devices of all hosts
    train.eval_batch_size = 8
    train.distributed = False  # multi-host: call jax.distributed.initialize() first
    train.num_steps = 20_000
    train.log_every = 50  # steps between train-metric logs and progress lines
    train.eval_every = 500  # steps between validation passes (early stopping counts these)
    train.checkpoint_every = 500  # steps between "latest" checkpoints
    train.max_to_keep = 2  # latest checkpoints kept on disk
    train.loss = "bce"  # a name in msunet.losses.LOSSES: "bce" (the paper's) or "bce_dice"
    train.best_metric = "fg_iou"  # validation metric choosing the "best" checkpoint: loss (lower
    # is better), fg_iou, dice, accuracy or mean_iou_2class (higher is better)
    train.seed = 0  # initialisation and data-order seed
    train.skip_nonfinite = False  # False: stop at a NaN/Inf loss or gradient; True: skip the step
    train.early_stopping = ml_collections.ConfigDict()
    train.early_stopping.patience = 10  # validation passes without improvement before stopping
    train.early_stopping.min_delta = 1e-4  # smallest drop in validation loss that counts

    config.eval = ev = ml_collections.ConfigDict()  # msunet.evaluate and msunet.predict
    ev.threshold = 0.5  # probability at or above which a pixel is lesion
    ev.pick_threshold = False  # evaluate: choose the threshold on the val split (never on test)
    ev.threshold_candidates = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
    ev.tta_hflip = False  # also predict the mirrored image and average the two probabilities
    ev.sliding_window = False  # predict: False = the model on the whole image prepared at
    # data.image_size; True = that image tiled with data.patch_size windows (training's scale)
    ev.window_overlap = 0.5  # sliding window: overlap of neighbouring windows, in [0, 1)
    return config
