import copy
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # run without installing

torch.set_num_threads(int(os.environ.get("TRQAT_TEST_THREADS", "1")))  # tiny tensors: threads only add sync (and spin under load)

# The controller's resolved config for a small synthetic task (written by test/config/python-config.test.ts,
# which fails when the schema and this file drift apart): the worker is tested with what it receives.
with open(os.path.join(os.path.dirname(__file__), "base_config.json")) as _f:
    BASE_CONFIG = json.load(_f)


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


@pytest.fixture
def fake_controller():
    """Makes FakeControllers (fake_controller.py: the controller's side of the protocol) with the
    given options, and closes them after the test (raising what failed in an auto-replying one)."""
    from fake_controller import FakeController

    made = []

    def make(**options):
        made.append(FakeController(**options))
        return made[-1]
    yield make
    errors = []
    for ctrl in made:
        try:
            ctrl.close()
        except BaseException as e:  # every one is closed; the first failure is the test's
            errors.append(e)
    if errors:
        raise errors[0]
