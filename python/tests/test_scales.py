"""The released code's scale rules and the scales' optimizer group (trqat.scales), each checked
against an independent computation (numpy, or the released quantizer's expression written out)."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from trqat.quant import QConv2d
from trqat.trainer import Trainer

from conftest import make_config

RELEASED_QUANT = {"quant.weight_scale_init": "std", "quant.act_scale_init": "std", "quant.lsq_grad_scale": False}


def test_std_rules_set_the_scales_from_the_weights_and_the_first_batch():
    trainer = Trainer(make_config(**RELEASED_QUANT), torch.device("cpu"))
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=n: inputs.setdefault(name, args[0].detach().clone()))
             for n, m in trainer.layers]
    for name, m in trainer.layers:  # frozen under TR, set from the weights: 3 std(W) (unbiased) + the 1e-6
        w = m.weight.detach().double().numpy()
        assert not m.weight_scale.requires_grad
        assert math.isclose(m.weight_scale.item(), 3 * np.std(w, ddof=1) + 1e-6, rel_tol=1e-6), name
    trainer.forward_backward(0)
    for h in hooks:
        h.remove()
    for name, m in trainer.layers:  # from each layer's input on the first batch
        x = inputs[name].double().numpy()
        expected = 3 * np.std(x, ddof=1) / math.sqrt(1 - 2 / math.pi) + 1e-6
        assert math.isclose(m.act_scale.item(), expected, rel_tol=1e-5), name


def test_paper_rules_stay_the_default():
    trainer = Trainer(make_config(), torch.device("cpu"))
    _, m = trainer.layers[0]
    w = m.weight.detach().double().abs().mean().item()
    assert math.isclose(m.weight_scale.item(), 2 * 2 * w / math.sqrt(1), rel_tol=1e-6)  # gamma * 2 mean|w| / sqrt(beta)


def released_forward(x, w, s_w, s_a, bits):
    """The released QConv's forward (w / (|s| + 1e-6), clamp, round with a straight-through gradient)."""
    ste = lambda v: v + (v.round() - v).detach()  # noqa: E731
    qw = ste((w / (s_w.abs() + 1e-6) * 2 ** (bits - 1)).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1)) / 2 ** (bits - 1)
    qa = ste((x / (s_a.abs() + 1e-6) * 2 ** bits).clamp(0, 2 ** bits - 1)) / 2 ** bits
    return F.conv2d(qa, qw, None, 1, 1)


def test_without_lsq_gradient_scaling_the_scale_gets_the_released_gradient():
    torch.manual_seed(0)
    layer = QConv2d(4, 6, 3, padding=1, bias=False, weight_bits=2, act_bits=2)
    layer.weight_scale_init, layer.act_scale_init, layer.lsq_grad_scale = "std", "std", False
    layer.init_weight_scale()
    x = torch.relu(torch.randn(8, 4, 5, 5))
    y = layer(x)  # the first training forward initialises the activation scale
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    # the released parameters are ours less the 1e-6 folded into them
    s_w = (layer.weight_scale.detach() - 1e-6).requires_grad_()
    s_a = (layer.act_scale.detach() - 1e-6).requires_grad_()
    ref = released_forward(x, layer.weight.detach(), s_w, s_a, 2)
    assert torch.equal(ref, y.detach())
    (ref * torch.linspace(-1, 1, ref.numel()).view_as(ref)).sum().backward()
    assert math.isclose(layer.act_scale.grad.item(), s_a.grad.item(), rel_tol=1e-5)


def test_the_scales_get_a_group_of_their_own_with_its_lr_momentum_and_no_decay():
    cfg = make_config(**RELEASED_QUANT, **{"optimizer.scale_lr": 0.01, "optimizer.scale_momentum": 0.0,
                                           "optimizer.no_decay_momentum": 0.0, "optimizer.lr": 0.1})
    trainer = Trainer(cfg, torch.device("cpu"))
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    act_scales = {id(m.act_scale) for _, m in trainer.layers}
    assert {id(p) for p in groups["scales"]["params"]} == act_scales  # weight scales are frozen under TR
    assert (groups["scales"]["momentum"], groups["scales"]["weight_decay"]) == (0.0, 0.0)
    assert groups["no_decay"]["momentum"] == 0.0 and groups["fp_weights"]["momentum"] == 0.9
    assert not act_scales & {id(p) for p in groups["no_decay"]["params"]}
    trainer.set_lrs(0.2, 0.05)
    assert math.isclose(groups["scales"]["lr"], 0.005, rel_tol=1e-15)
    assert groups["fp_weights"]["lr"] == 0.05 and groups["no_decay"]["lr"] == 0.05
    # baseline mode: the weight scales train, in the same group
    base = Trainer(make_config(**{**{"optimizer.scale_lr": 0.01}, "mode": "baseline"}), torch.device("cpu"))
    scales = next(g for g in base.optimizer.param_groups if g["name"] == "scales")
    assert {id(p) for p in scales["params"]} == {id(p) for _, m in base.layers for p in (m.act_scale, m.weight_scale)}
    assert scales["momentum"] == 0.9  # scale_momentum null: the optimizer's
