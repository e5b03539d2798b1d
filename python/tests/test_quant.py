import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trqat.adapt import quantize_from_config
from trqat.models import resnet20
from trqat.quant import QConv2d, QLinear, fake_quantize, quantized_layers, scale_gradient

BITS = [1, 2, 3, 4, 8]


def ref_range(bits, signed):
    """(alpha, beta, gamma) written out from the table in docs/method.md."""
    if bits == 1:
        return (-1, 1, 1) if signed else (0, 1, 1)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    return 0, 2**bits - 1, 2**bits


def ref_levels(x, s, bits, signed):
    """Numpy reference for x_int (float32 arithmetic, round half to even like torch)."""
    x, s = np.asarray(x, np.float32), np.asarray(s, np.float32)
    if bits == 1 and signed:
        return np.where(x >= 0, 1.0, -1.0)
    alpha, beta, gamma = ref_range(bits, signed)
    return np.round(np.clip(x / s * np.float32(gamma), alpha, beta))


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", BITS)
def test_levels_match_reference_and_cover_range(bits, signed):
    x = torch.linspace(-1.5, 1.5, 20001)  # dense: every level of s = 1.3, and clipped values
    s = torch.tensor(1.3)
    alpha, beta, gamma = ref_range(bits, signed)
    y = fake_quantize(x, s, bits, signed, 1.0)
    levels = (y * gamma).numpy()
    np.testing.assert_array_equal(levels, ref_levels(x.numpy(), 1.3, bits, signed))
    assert levels.min() == alpha and levels.max() == beta
    assert len(np.unique(levels)) == (2 if bits == 1 else beta - alpha + 1)


def test_binary_levels_zero_maps_to_plus_one():
    x = torch.tensor([-0.5, 0.0, 0.3, -0.0])
    assert fake_quantize(x, torch.tensor(1.0), 1, True, 1.0).tolist() == [-1, 1, 1, 1]
    assert fake_quantize(torch.tensor([-2.0, 0.4, 0.6, 3.0]), torch.tensor(1.0), 1, False, 1.0).tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", BITS)
def test_ste_gradient_of_input(bits, signed):
    x = torch.linspace(-3, 3, 601, requires_grad=True)
    s = 1.7
    fake_quantize(x, torch.tensor(s), bits, signed, 1.0).sum().backward()
    alpha, beta, gamma = ref_range(bits, signed)
    v = gamma * x.detach() / s
    inside = (x.detach().abs() <= s) if (bits == 1 and signed) else (v >= alpha) & (v <= beta)
    expected = torch.where(inside, torch.full_like(x, 1 / s), torch.zeros_like(x))
    torch.testing.assert_close(x.grad, expected)
    assert inside.any() and (~inside).any()


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", BITS)
def test_scale_gradient_is_lsq_scaled_analytic(bits, signed):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, generator=gen) * 2
    r = torch.randn(300, generator=gen)
    s = torch.tensor(1.1, requires_grad=True)
    g = 1 / math.sqrt(300 * ref_range(bits, signed)[1])
    (fake_quantize(x, s, bits, signed, g) * r).sum().backward()
    # d x_q / d s = d/ds (gamma x / s) / gamma = -x / s^2 inside the clip range, 0 outside
    alpha, beta, gamma = ref_range(bits, signed)
    v = gamma * x / 1.1
    inside = (v >= alpha) & (v <= beta)
    expected = g * (r * torch.where(inside, -x / 1.1**2, torch.zeros_like(x))).sum()
    torch.testing.assert_close(s.grad, expected)


def test_scale_gradient_keeps_value_exactly():
    s = torch.tensor([0.1234567, 3.3, 1e-3], requires_grad=True)
    out = scale_gradient(s, 0.0123)
    assert torch.equal(out, s.detach())
    out.sum().backward()
    torch.testing.assert_close(s.grad, torch.full((3,), 0.0123))


@pytest.mark.parametrize("bits", BITS)
def test_weight_levels_are_the_forward_levels(bits):
    torch.manual_seed(bits)
    conv = QConv2d(4, 6, 3, padding=1, bias=False, weight_bits=bits, act_bits=32)
    levels = conv.weight_levels()
    assert levels.dtype == torch.int8
    _, beta, gamma = ref_range(bits, True)
    expected = ref_levels(conv.weight.detach().numpy(), conv.weight_scale.item(), bits, True)
    np.testing.assert_array_equal(levels.numpy(), expected)
    assert torch.equal(conv.quantized_weight().detach() * gamma, levels.float())
    # LSQ init rule: s = gamma * 2 mean|w| / sqrt(beta)
    torch.testing.assert_close(conv.weight_scale.detach(), gamma * 2 * conv.weight.detach().abs().mean() / math.sqrt(beta))


def test_layer_forward_equals_reference_computation():
    torch.manual_seed(1)
    conv = QConv2d(3, 5, 3, padding=1, bias=True, weight_bits=3, act_bits=4)
    x = torch.rand(2, 3, 8, 8) * 3
    out = conv(x)  # training mode: initialises the activation scale from x
    sa = conv.act_scale.item()
    assert bool(conv.act_initialized)
    np.testing.assert_allclose(sa, 16 * 2 * x.abs().mean().item() / math.sqrt(15), rtol=1e-6)
    xq = torch.from_numpy(ref_levels(x.numpy(), sa, 4, False)).float() / 16
    wq = torch.from_numpy(ref_levels(conv.weight.detach().numpy(), conv.weight_scale.item(), 3, True)).float() / 4
    torch.testing.assert_close(out, F.conv2d(xq, wq, conv.bias, padding=1))


def test_activation_scale_initialised_once_and_only_in_training():
    lin = QLinear(8, 3, weight_bits=2, act_bits=2)
    lin.eval()
    lin(torch.rand(4, 8))
    assert not bool(lin.act_initialized) and lin.act_scale.item() == 1.0
    lin.train()
    lin(torch.rand(4, 8))
    first = lin.act_scale.item()
    lin(torch.rand(4, 8) * 10)
    assert lin.act_scale.item() == first and bool(lin.act_initialized)
    fresh = QLinear(8, 3, weight_bits=2, act_bits=2)
    fresh.load_state_dict(lin.state_dict())
    fresh(torch.rand(4, 8) * 10)  # the loaded flag prevents a re-initialisation
    assert fresh.act_scale.item() == first


def test_per_channel_scales():
    torch.manual_seed(2)
    conv = QConv2d(3, 4, 3, weight_bits=4, act_bits=32, per_channel=True)
    assert conv.weight_scale.shape == (4, 1, 1, 1)
    w = conv.weight.detach()
    expected = 8 * 2 * w.abs().flatten(1).mean(1) / math.sqrt(7)
    torch.testing.assert_close(conv.weight_scale.detach().flatten(), expected)
    levels = conv.weight_levels().numpy()
    for c in range(4):
        np.testing.assert_array_equal(levels[c], ref_levels(w[c].numpy(), conv.weight_scale[c].item(), 4, True))
    conv.freeze_weight_scale(False)
    conv(torch.rand(1, 3, 5, 5)).sum().backward()
    assert conv.weight_scale.grad.shape == (4, 1, 1, 1)


def test_freeze_weight_scale():
    conv = QConv2d(2, 2, 1, weight_bits=2, act_bits=2)
    assert not conv.weight_scale.requires_grad  # frozen by default, as TR scheduling needs
    conv.freeze_weight_scale(False)
    assert conv.weight_scale.requires_grad
    conv.freeze_weight_scale(True)
    assert not conv.weight_scale.requires_grad
    conv.freeze_weight_scale(False)
    assert conv.weight_scale.requires_grad


QUANT = {"weight_bits": 2, "act_bits": 2, "first_last_fp": True, "full_precision": [], "per_channel": False,
         "output_scale": "auto", "layer_bits": {}}


def test_quantize_from_config_keeps_first_and_last_fp():
    model = quantize_from_config(resnet20(1, 10), QUANT)
    names = [n for n, _ in quantized_layers(model)]
    assert len(names) == 18 and names[0] == "layers.0.conv1" and names[-1] == "layers.8.conv2"
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    all_q = quantize_from_config(resnet20(1, 10), {**QUANT, "weight_bits": 3, "act_bits": 32, "first_last_fp": False})
    kinds = [m.kind for _, m in quantized_layers(all_q)]
    assert len(kinds) == 20 and kinds[0] == "conv" and kinds[-1] == "linear"
    assert all(m.weight_bits == 3 and m.act_bits == 32 for _, m in quantized_layers(all_q))


def test_quantize_from_config_copies_weights():
    torch.manual_seed(3)
    model = resnet20(1, 10)
    before = model.layers[4].conv2.weight.detach().clone()
    quantize_from_config(model, QUANT)
    assert isinstance(model.layers[4].conv2, QConv2d)
    assert torch.equal(model.layers[4].conv2.weight.detach(), before)
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", BITS)
def test_inference_path_equals_ste_path(bits, signed):
    x = torch.linspace(-2, 2, 4001)
    s = torch.tensor(0.77, requires_grad=True)
    with torch.no_grad():
        fast = fake_quantize(x, s, bits, signed, 0.1)
    assert torch.equal(fast, fake_quantize(x, s, bits, signed, 0.1).detach())


@pytest.mark.parametrize("bits", BITS)
def test_signed_activation_quantizer_levels(bits):
    torch.manual_seed(bits)
    lin = QLinear(6, 3, weight_bits=2, act_bits=bits, act_signed=True)
    x = torch.randn(64, 6) * 2  # negative inputs, as after a LayerNorm
    lin(x)  # training forward: initialises the scale with the signed range
    alpha, beta, gamma = ref_range(bits, True)
    sa = lin.act_scale.item()
    np.testing.assert_allclose(sa, gamma * 2 * x.abs().mean().item() / math.sqrt(beta), rtol=1e-6)
    grid = torch.linspace(-3 * sa, 3 * sa, 5001)
    levels = (lin.quantized_input(grid) * gamma).detach().numpy()
    np.testing.assert_array_equal(levels, ref_levels(grid.numpy(), sa, bits, True))
    assert levels.min() == alpha and levels.max() == beta  # negative levels exist
    unsigned = QLinear(6, 3, weight_bits=2, act_bits=bits)
    unsigned(x)
    assert (unsigned.quantized_input(-grid.abs()) == 0).all()  # the unsigned quantizer clips them


def test_binary_signed_activations_are_signs():
    conv = QConv2d(2, 2, 1, bias=False, weight_bits=1, act_bits=1, act_signed=True)
    x = torch.tensor([-0.3, 0.0, 2.0, -5.0]).view(1, 2, 2, 1)
    conv(x)
    assert conv.quantized_input(x).flatten().tolist() == [-1, 1, 1, -1]


def test_output_scale_restores_the_fp_range():
    torch.manual_seed(4)
    fp = nn.Linear(64, 32)
    x = torch.randn(256, 64)
    ref = fp(x)
    q = QLinear.from_float(fp, 4, 32, output_scale=True)
    w, wq = fp.weight.detach(), q.quantized_weight().detach()
    torch.testing.assert_close(q.output_scale.detach(), w.abs().mean() / wq.abs().mean())
    out = q(x)
    assert 0.8 < out.std().item() / ref.std().item() < 1.25
    assert F.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.95
    no_scale = QLinear.from_float(fp, 4, 32)
    assert not 0.5 < no_scale(x).std().item() / ref.std().item() < 2  # fixed point: the range is lost
    qa = QLinear.from_float(fp, 4, 4, act_signed=True, output_scale=True)
    qa(x)  # the activation scale's factor comes with its initialisation
    torch.testing.assert_close(qa.output_scale.detach(), w.abs().mean() / wq.abs().mean() * qa.act_scale.detach())
    assert F.cosine_similarity(qa(x).flatten(), ref.flatten(), dim=0) > 0.9
    conv = QConv2d(3, 4, 3, bias=True, weight_bits=2, act_bits=32, output_scale=True)
    y = conv(torch.randn(2, 3, 5, 5))
    assert y.shape == (2, 4, 3, 3)
