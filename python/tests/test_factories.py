"""model.factory / data.factory: a user's model and data named in the config."""
import sys
import textwrap

import pytest
import torch

from conftest import make_config
from trqat.factories import FactoryError
from trqat.trainer import Trainer

CPU = torch.device("cpu")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_factories.py").write_text(textwrap.dedent("""
        import torch
        import torch.nn as nn

        def small_cnn(width=8, classes=4):
            return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

        class Blobs(torch.utils.data.Dataset):
            def __init__(self, n, seed):
                g = torch.Generator().manual_seed(seed)
                self.y = torch.randint(0, 4, (n,), generator=g)
                self.x = torch.randn(n, 1, 12, 12, generator=g) + self.y.view(-1, 1, 1, 1).float()
            def __len__(self):
                return len(self.y)
            def __getitem__(self, i):
                return self.x[i], int(self.y[i])

        def blobs(train=64, test=32):
            return Blobs(train, 0), Blobs(test, 1)

        def broken():
            raise ValueError("no data here")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_factories", None)


def factory_config(**overrides):
    return make_config(**{"model.factory": "my_factories:small_cnn", "model.kwargs": {"width": 8, "classes": 4},
                          "data.factory": "my_factories:blobs", "data.kwargs": {}, "data.batch_size": 16,
                          "model.num_classes": 4, **overrides})


def test_factories_build_quantize_and_train(user_module):
    trainer = Trainer(factory_config(), CPU)
    names = [name for name, _ in trainer.layers]
    assert names == ["3"]  # the middle conv; the first conv and the last linear stay full precision
    assert trainer.data.steps_per_epoch == 4
    before = trainer.model.state_dict()["3.weight"].clone()
    assert trainer.count_transitions() is None
    trainer.forward_backward(0)
    trainer.set_lrs(0.1, 0.1)
    trainer.optimizer_step()
    assert not torch.equal(before, trainer.model.state_dict()["3.weight"])
    assert trainer.evaluate()["samples"] == 32


@pytest.mark.parametrize("key, ref, message", [
    ("model.factory", "no_such_package.models:build", "model.factory = 'no_such_package.models:build': cannot import module 'no_such_package.models'"),
    ("model.factory", "my_factories:missing", "module 'my_factories' has no function 'missing'"),
    ("data.factory", "my_factories:broken", "data.factory = 'my_factories:broken' failed when called with {}: ValueError: no data here"),
    ("data.factory", "my_factories:small_cnn", "must return (train_dataset, test_dataset), got Sequential"),
])
def test_factory_errors_name_the_key_and_the_cause(user_module, key, ref, message):
    with pytest.raises(FactoryError) as error:
        Trainer(factory_config(**{key: ref}), CPU)
    assert message in str(error.value)
