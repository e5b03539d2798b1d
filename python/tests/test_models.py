"""Every model: builds, quantizes the intended layers, counts transitions and trains a step."""
import copy
import math
import warnings

import pytest
import torch
import torch.nn as nn

from conftest import make_config
from trqat.adapt import quantize
from trqat.models import MODELS, build_fp_model, build_model, resnet20
from trqat.adapt import quantize_from_config
from trqat.quant import QuantLayer, quantized_layers
from trqat.trainer import Trainer

CPU = torch.device("cpu")


def _downsamples(n):
    return {f"layer{i}.0.downsample.0" for i in range(2, 2 + n)}


# model -> (number of quantized layers, the conv/linear layers that stay full precision) at 32x32
EXPECTED = {
    "resnet20": (18, {"conv1", "fc"}),
    "resnet18": (16 + 3, {"conv1", "fc"}),
    "resnet34": (32 + 3, {"conv1", "fc"}),
    "resnet50": (48 + 4, {"conv1", "fc"}),
    "mobilenetv2": (51, {"features.0.0", "classifier.1"}),
    "reactnet18": (16, {"conv1", "fc"} | {f"layers.{i}.downsample.1" for i in (4, 8, 12)}),
    "deit_tiny": (48, {"patch_embed.proj", "head"}),
    "deit_small": (48, {"patch_embed.proj", "head"}),
}


def image_config(name, size=None, **overrides):
    """2 images of 3x32x32 (DeiT: 3x16x16, 16 patches of 4x4) in 10 classes."""
    size = size or (16 if name.startswith("deit") else 32)
    bits = 1 if name == "reactnet18" else 2
    return make_config(**{
        "model.name": name, "model.in_channels": 3, "model.num_classes": 10, "model.image_size": size,
        "quant.weight_bits": bits, "quant.act_bits": bits,
        "data.batch_size": 2, "data.eval_batch_size": 2,
        "data.synthetic": {"train_size": 4, "test_size": 2, "image_size": size, "channels": 3, "num_classes": 10},
        **overrides})


def fp_layers(model):
    return {n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)}


def test_registry_is_the_documented_list():
    assert sorted(MODELS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_quantizes_the_intended_layers_and_trains(name):
    torch.manual_seed(0)
    trainer = Trainer(image_config(name), CPU)
    n_quant, fp = EXPECTED[name]
    assert len(trainer.layers) == n_quant
    assert fp_layers(trainer.model) == fp
    model = trainer.model
    if name == "deit_tiny" or name == "deit_small":
        for _, m in trainer.layers:
            assert m.kind == "linear" and m.has_output_scale
            short = _.rsplit(".", 1)[1]
            assert m.act_signed == (short in ("qkv", "proj", "fc1"))
    elif name == "reactnet18":
        assert all(m.act_signed and m.weight_bits == 1 and m.act_bits == 1 for _, m in trainer.layers)
        assert all(n.endswith(".conv") and m.kernel_size == (3, 3) for n, m in trainer.layers)
    elif name == "mobilenetv2":
        signed = {n for n, m in trainer.layers if m.act_signed}
        assert signed == {f"features.{i}.conv.0.0" for i in range(2, 18)} | {"features.18.0"}
    else:
        assert not any(m.act_signed or m.has_output_scale for _, m in trainer.layers)
    if name.startswith("resnet") and name != "resnet20":  # CIFAR-style stem for 32x32 inputs
        assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
        assert isinstance(model.maxpool, nn.Identity)

    assert trainer.count_transitions() is None
    before = [m.weight.detach().clone() for _, m in trainer.layers]
    trainer.forward_backward(0)
    trainer.set_lrs(0.05, 0.05)
    trainer.optimizer_step()
    stats = trainer.take_stats()
    loss, samples = stats["loss"], stats["samples"]
    assert math.isfinite(loss) and samples == 2
    assert any(not torch.equal(b, m.weight) for b, (_, m) in zip(before, trainer.layers))
    counts = trainer.count_transitions()
    assert len(counts) == n_quant and all(isinstance(c, int) and c >= 0 for c in counts)
    assert trainer.evaluate()["samples"] == 2


def _describe(model):
    """Every quantized layer: its class, bits, quantizer kinds, weight scale and levels."""
    return {n: (type(m), m.weight_bits, m.act_bits, m.act_signed, m.has_output_scale,
                m.weight_scale.detach().clone(), m.weight_levels()) for n, m in quantized_layers(model)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_managed_and_public_paths_quantize_the_same_layers(name):
    """build_model (the config's words) and trqat.quantize (the model's hints passed by hand) give
    the same quantized layers, bits, quantizers and levels; without the hints, trqat.quantize
    quantizes exactly the layers the architecture keeps real-valued on top."""
    cfg = image_config(name)
    torch.manual_seed(0)
    fp = build_fp_model(name, 3, 10, cfg["model"]["image_size"])
    torch.manual_seed(0)
    managed = build_model(cfg)
    assert torch.equal(next(fp.parameters()), next(managed.parameters()))  # the same float weights
    bits = cfg["quant"]["weight_bits"]
    hints = getattr(fp, "quant_hints", {})
    public = quantize(copy.deepcopy(fp), bits, bits, exclude=hints.get("full_precision"),
                      signed_act=hints.get("signed_act"), unsigned_act=hints.get("unsigned_act"),
                      output_scale=hints.get("output_scale"))
    a, b = _describe(managed), _describe(public)
    assert list(a) == list(b) and len(a) == EXPECTED[name][0]
    for layer in a:
        assert a[layer][:5] == b[layer][:5], layer
        assert torch.equal(a[layer][5], b[layer][5]) and torch.equal(a[layer][6], b[layer][6]), layer
    plain = {n for n, _ in quantized_layers(quantize(copy.deepcopy(fp), bits, bits))}
    real_valued = {f"layers.{i}.downsample.1" for i in (4, 8, 12)} if name == "reactnet18" else set()
    assert plain - set(a) == real_valued and set(a) <= plain


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "mobilenetv2", "reactnet18", "deit_tiny"])
def test_per_channel_scales_on_every_model_kind(name):
    torch.manual_seed(1)
    cfg = image_config(name, **{"quant.per_channel": True})
    model = build_model(cfg)
    layers = quantized_layers(model)
    for _, m in layers:
        out = m.weight.shape[0]
        assert m.weight_scale.shape == (out,) + (1,) * (m.weight.dim() - 1)
        w = m.weight.detach()
        _, beta, gamma = {1: (-1, 1, 1), 2: (-2, 1, 2)}[m.weight_bits]
        expected = gamma * 2 * w.abs().flatten(1).mean(1) / math.sqrt(beta)
        torch.testing.assert_close(m.weight_scale.detach().flatten(), expected)
        assert not m.weight_scale.requires_grad  # frozen by default (TR scheduling); baseline mode trains them
        m.freeze_weight_scale(False)
    size = cfg["model"]["image_size"]
    model(torch.randn(2, 3, size, size)).sum().backward()
    assert all(m.weight_scale.grad is not None and m.weight_scale.grad.shape == m.weight_scale.shape
               for _, m in layers)


def test_large_images_keep_the_imagenet_stem():
    model = build_model(image_config("resnet18", size=96))
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    mb = build_model(image_config("mobilenetv2", size=96))
    assert mb.features[0][0].stride == (2, 2)
    vit = build_model(image_config("deit_tiny", size=64))
    assert vit.patch_embed.proj.kernel_size == (16, 16) and vit.pos_embed.shape == (1, 17, 192)
    assert build_model(image_config("deit_tiny", size=32)).patch_embed.proj.kernel_size == (4, 4)
    with pytest.raises(ValueError, match="image_size 30 is not a multiple of the patch size 4"):
        build_model(image_config("deit_tiny", size=30))


def test_any_in_channels_and_classes():
    model = build_model(image_config("resnet18", **{"model.in_channels": 1, "model.num_classes": 7}))
    assert model.conv1.in_channels == 1 and model.fc.out_features == 7
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_full_precision_patterns():
    cfg = image_config("resnet18", **{"quant.full_precision": ["*.downsample.*", "layer4"]})
    model = build_model(cfg)
    names = {n for n, _ in quantized_layers(model)}
    assert not any("downsample" in n or n.startswith("layer4") for n in names)
    assert len(names) == 16 - 4 and "layer3.1.conv2" in names
    with pytest.raises(ValueError, match="quant.full_precision pattern 'layr1.\\*' matches no module"):
        build_model(image_config("resnet18", **{"quant.full_precision": ["layr1.*"]}))


def test_output_scale_modes():
    on = build_model(image_config("resnet20", **{"quant.output_scale": "on"}))
    assert all(m.has_output_scale for _, m in quantized_layers(on))
    off = build_model(image_config("deit_tiny", **{"quant.output_scale": "off"}))
    assert not any(m.has_output_scale for _, m in quantized_layers(off))
    assert not any(n.endswith("output_scale") for n, _ in off.named_parameters())
    with pytest.raises(ValueError, match="quant.output_scale must be one of auto, on, off"):
        build_model(image_config("resnet20", **{"quant.output_scale": "yes"}))


def test_output_scales_are_trained_without_decay():
    trainer = Trainer(image_config("deit_tiny", size=16, **{"quant.act_bits": 32}), CPU)
    scales = [m.output_scale for _, m in trainer.layers]
    no_decay = trainer.optimizer.param_groups[-1]
    assert no_decay["name"] == "no_decay" and no_decay["weight_decay"] == 0
    assert {id(s) for s in scales} <= {id(p) for p in no_decay["params"]}
    before = [s.detach().clone() for s in scales]
    trainer.forward_backward(0)
    trainer.set_lrs(0.05, 0.05)
    trainer.optimizer_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, scales))


def test_weight_bits_32_means_a_full_precision_model():
    cfg = make_config(**{"quant.weight_bits": 32, "quant.act_bits": 32})
    trainer = Trainer(cfg, CPU)
    assert trainer.layers == [] and trainer.layer_info() == []
    assert not any(isinstance(m, QuantLayer) for m in trainer.model.modules())
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["fp_weights", "no_decay"]
    assert trainer.param_counts()["quantized"] == 0
    w = trainer.model.layers[0].conv1.weight.detach().clone()
    counts = []
    for t in range(2):
        counts.append(trainer.count_transitions())
        trainer.forward_backward(t)
        trainer.set_lrs([], 0.05)
        trainer.optimizer_step()
    assert counts == [None, []] and trainer.count_transitions() == []
    assert not torch.equal(w, trainer.model.layers[0].conv1.weight)
    assert math.isfinite(trainer.take_stats()["loss"])
    with pytest.warns(UserWarning, match="weight_bits is 32: the model stays full precision and act_bits 2 is ignored"):
        model = quantize_from_config(resnet20(1, 4), {**cfg["quant"], "act_bits": 2})
    assert quantized_layers(model) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_from_config(resnet20(1, 4), cfg["quant"])


def test_a_missing_torchvision_names_the_extra(monkeypatch):
    import sys

    from trqat.extras import MissingExtra
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` raises ImportError
    with pytest.raises(MissingExtra, match=r"the model resnet18 needs torchvision, .*pip install 'trqat\[vision\]'"):
        build_fp_model("resnet18", 3, 10, 32)
    assert isinstance(build_fp_model("resnet20", 3, 10, 32), nn.Module)  # ResNet-20 is trqat's own
