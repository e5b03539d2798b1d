import copy
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # run without installing

torch.set_num_threads(int(os.environ.get("TRQAT_TEST_THREADS", "1")))  # tiny tensors: threads only add sync (and spin under load)

BASE_CONFIG = {  # every key of docs/worker-config.md, resolved as the controller sends it
    "seed": 0,
    "mode": "tr",
    "model": {"name": "resnet20", "in_channels": 1, "num_classes": 4, "image_size": 12, "init_checkpoint": None},
    "quant": {"weight_bits": 2, "act_bits": 2, "first_last_fp": True, "full_precision": [], "per_channel": False,
              "output_scale": "auto", "layer_bits": {}},
    "data": {
        "name": "synthetic",
        "root": "/nonexistent",
        "batch_size": 16,
        "eval_batch_size": 32,
        "augment": True,
        "image_size": 224,
        "num_workers": 0,
        "train_subset": None,
        "test_subset": None,
        "synthetic": {"train_size": 64, "test_size": 48, "image_size": 12, "channels": 1, "num_classes": 4},
    },
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
                  "quantized_weight_decay": 5e-4, "betas": [0.9, 0.999], "eps": 1e-8, "kwargs": {}},
    "train": {"grad_clip": None, "label_smoothing": 0.0,
              "distill": {"teacher_checkpoint": None, "teacher_model": None, "temperature": 1.0, "alpha": 1.0}},
    "tr": {"scope": "network"},
    "worker": {"device": "cpu", "amp": False, "threads": None},
}


def make_config(**overrides):
    """BASE_CONFIG with dotted-key overrides, e.g. make_config(**{"quant.weight_bits": 3})."""
    cfg = copy.deepcopy(BASE_CONFIG)
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


@pytest.fixture
def config():
    return make_config()
