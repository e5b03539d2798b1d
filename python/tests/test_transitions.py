import numpy as np
import torch

from trqat.models import resnet20
from trqat.adapt import quantize
from trqat.quant import quantized_layers
from trqat.transitions import TransitionCounter


def numpy_levels(w, s, bits):
    """Independent weight quantizer: x_int = round(clip(gamma w / s, alpha, beta)), sign for b=1."""
    w = w.astype(np.float32)
    if bits == 1:
        return np.where(w >= 0, 1, -1)
    half = 2 ** (bits - 1)
    return np.round(np.clip(w / np.float32(s) * np.float32(half), -half, half - 1))


def snapshot(layers):
    return [(m.weight.detach().numpy().copy(), m.weight_scale.item()) for m in layers]


def test_counts_match_independent_count():
    torch.manual_seed(0)
    model = quantize(resnet20(1, 4), 2, 2)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    assert counter.update() is None  # no previous levels yet
    for step in range(3):
        before = snapshot(layers)
        model(torch.randn(8, 1, 12, 12)).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad()
        after = snapshot(layers)
        counts = counter.update()
        expected = [int((numpy_levels(w0, s0, 2) != numpy_levels(w1, s1, 2)).sum())
                    for (w0, s0), (w1, s1) in zip(before, after)]
        assert counts == expected
        assert sum(counts) > 0
    assert counter.update() == [0] * len(layers)  # nothing changed since the last call


def test_binary_counts_follow_sign_flips():
    torch.manual_seed(1)
    model = quantize(resnet20(1, 4), 1, 1)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    counter.update()
    with torch.no_grad():
        layers[0].weight[0, 0, 0, 0] *= -1
        layers[0].weight[1].neg_()
    counts = counter.update()
    assert counts[0] == 1 + layers[0].weight[1].numel()  # kaiming-normal weights are never 0
    assert sum(counts[1:]) == 0


def test_state_is_one_byte_per_weight_and_round_trips():
    model = quantize(resnet20(1, 4), 3, 3)
    layers = [m for _, m in quantized_layers(model)]
    counter = TransitionCounter(layers)
    assert counter.state_dict() == {"prev": None}
    counter.update()
    assert counter.numels == [m.weight.numel() for m in layers]
    assert all(p.dtype == torch.int8 and p.numel() == n for p, n in zip(counter.prev, counter.numels))
    other = TransitionCounter(layers)
    other.load_state_dict(counter.state_dict())
    with torch.no_grad():
        layers[2].weight.mul_(-1)
    assert other.update() == counter.update()
