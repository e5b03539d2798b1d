"""Distance of the weights to their nearest transition point, against an independent numpy count."""
import numpy as np
import pytest
import torch

from trqat.diagnostics import DISTANCE_BIN_WIDTH, DISTANCE_BINS, distance_summary, step_fields, transition_distance
from trqat.quant import QConv2d, QLinear


def numpy_distances(w: np.ndarray, s: np.ndarray, bits: int) -> np.ndarray:
    """min over every transition point t of |gamma w / s - t|, the points listed explicitly."""
    if bits == 1:
        points, gamma = np.array([0.0]), 1.0
    else:
        gamma = 2.0 ** (bits - 1)
        levels = np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1))  # alpha..beta
        points = (levels[:-1] + levels[1:]) / 2  # midpoints between neighbouring levels
    u = (gamma * w / s).astype(np.float64)
    return np.abs(u[..., None] - points).min(axis=-1)


def numpy_summary(d: np.ndarray):
    edges = list(np.arange(DISTANCE_BINS) * DISTANCE_BIN_WIDTH) + [np.inf]
    return np.histogram(d.ravel(), bins=edges)[0].tolist(), float(d.mean())


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("per_channel", [False, True])
def test_distance_matches_numpy(bits, per_channel):
    torch.manual_seed(bits)
    layer = QConv2d(8, 16, 3, weight_bits=bits, act_bits=2, per_channel=per_channel)
    with torch.no_grad():  # some weights far outside the clipping range too
        layer.weight[0].mul_(10)
    w, s = layer.weight.detach().numpy(), layer.weight_scale.detach().numpy()
    expected = numpy_distances(w, s, bits)
    np.testing.assert_allclose(transition_distance(layer).numpy(), expected, rtol=1e-5, atol=1e-5)
    summary = distance_summary([layer])
    hist, mean = numpy_summary(expected)
    # float32 against float64 may move a weight sitting on a bin edge: allow one per bin
    assert np.abs(np.array(summary["hist"][0]) - hist).max() <= 1
    assert sum(summary["hist"][0]) == layer.weight.numel()
    assert summary["mean"][0] == pytest.approx(mean, rel=1e-5)
    assert summary["hist"][0][-1] > 0  # the scaled-up weights are beyond the last transition point


def test_a_weight_moved_by_its_distance_changes_level():
    """The meaning of the number: moving a weight by (a bit more than) its distance, towards the
    nearest transition point, changes its level; a bit less does not."""
    torch.manual_seed(0)
    layer = QLinear(32, 16, weight_bits=2, act_bits=2)
    d = transition_distance(layer)
    before = layer.weight_levels()
    step = layer.weight_scale.detach() / 2  # one quantization step in weight units (gamma = 2)
    u = layer.weight.detach() * 2 / layer.weight_scale.detach()
    towards = torch.sign((u.floor() + 0.5).clamp(-1.5, 0.5) - u)
    inside = (d > 0.05) & (d < 0.45)  # away from float ties, level centres and the clipped range
    for factor, changes in ((1.02, True), (0.98, False)):
        with torch.no_grad():
            moved = layer.weight.detach() + towards * d * step * factor
            original = layer.weight.detach().clone()
            layer.weight.copy_(moved)
            after = layer.weight_levels()
            layer.weight.copy_(original)
        assert bool(((after != before) == changes)[inside].all())


def test_step_fields_every_n_steps():
    layer = QLinear(4, 4, weight_bits=2, act_bits=2)
    assert [bool(step_fields([layer], t, 3)) for t in range(7)] == [True, False, False, True, False, False, True]
    assert step_fields([layer], 0, 0) == {}
    assert set(step_fields([layer], 0, 1)["dist"]) == {"hist", "mean"}
