"""trqat.adapt: quantizing existing models, and counting transitions on their own."""
import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trqat.adapt import TransitionTracker, count_transitions, quantize, quantize_from_config
from trqat.quant import QConv1d, QConv2d, QLinear, QuantLayer, fake_quantize as fake_quant, quantized_layers


class Block(nn.Module):
    """A nested module with every supported kind: grouped, depthwise, dilated, with/without bias."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x):
        return F.relu(self.bn2(self.depthwise(F.relu(self.bn1(self.grouped(x))))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stages = nn.ModuleList([nn.Sequential(Block(), nn.Conv2d(8, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8), nn.ReLU())])
        self.heads = nn.ModuleDict({"seq": nn.Sequential(nn.Conv1d(8, 16, 3, padding=1, groups=2), nn.BatchNorm1d(16), nn.ReLU(),
                                                         nn.Conv1d(16, 16, 1, bias=False), nn.BatchNorm1d(16), nn.ReLU())})
        self.hidden = nn.Linear(16, 32, bias=False)
        self.norm = nn.BatchNorm1d(32)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        x = self.heads["seq"](x.flatten(2))                 # [N, 16, L]
        x = F.relu(self.norm(self.hidden(x.mean(2))))
        return self.fc(x)


EXPECTED = {
    "stages.0.0.grouped": QConv2d, "stages.0.0.depthwise": QConv2d, "stages.0.1": QConv2d,
    "heads.seq.0": QConv1d, "heads.seq.3": QConv1d, "hidden": QLinear,
}


def test_every_supported_kind_and_nesting_is_quantized_first_and_last_stay_fp():
    torch.manual_seed(0)
    model = Net()
    stem, fc = model.stem, model.fc
    before = {n: m.weight for n, m in model.named_modules() if n in EXPECTED}
    out = quantize(model, weight_bits=2, act_bits=2)
    assert out is model
    layers = dict(quantized_layers(model))
    assert {n: type(m) for n, m in layers.items()} == EXPECTED
    assert model.stem is stem and model.fc is fc  # first conv, last linear: full precision
    for name, m in layers.items():
        assert m.weight is before[name]  # the same Parameter objects: an existing optimizer still holds them
        assert (m.weight_bits, m.act_bits) == (2, 2)
    dw = layers["stages.0.0.depthwise"]
    assert (dw.groups, dw.dilation, dw.padding, dw.bias is not None) == (8, (2, 2), (2, 2), True)
    assert layers["stages.0.0.grouped"].groups == 2 and layers["stages.0.0.grouped"].bias is None
    assert layers["heads.seq.0"].groups == 2 and layers["heads.seq.0"].kind == "conv1d"
    x = torch.randn(4, 3, 8, 8)
    model(x).sum().backward()
    for m in layers.values():
        assert m.weight.grad is not None and torch.isfinite(m.weight.grad).all()


def test_qconv1d_computes_with_quantized_input_and_weight():
    torch.manual_seed(1)
    conv = nn.Conv1d(4, 6, 3, padding=1, groups=2)
    q = QConv1d.from_float(copy.deepcopy(conv), 3, 4)
    x = torch.rand(2, 4, 10)
    q.train()
    y = q(x)  # initialises the activation scale from this batch
    with torch.no_grad():
        xq = fake_quant(x, q.act_scale, 4, False, 1.0)
        wq = fake_quant(q.weight, q.weight_scale, 3, True, 1.0)
        ref = F.conv1d(xq, wq, q.bias, 1, 1, 1, 2)
    assert torch.allclose(y, ref, atol=1e-6)
    levels = q.weight_levels()
    assert levels.dtype == torch.int8 and levels.min() >= -4 and levels.max() <= 3


def test_include_exclude_patterns_per_channel_and_copy():
    model = Net()
    original = copy.deepcopy(model.state_dict())
    q = quantize(model, 3, 32, include=["stages.*"], exclude="*.depthwise", per_channel=True, inplace=False)
    assert q is not model and not any(isinstance(m, QuantLayer) for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    layers = dict(quantized_layers(q))
    assert set(layers) == {"stages.0.0.grouped", "stages.0.1"}
    assert layers["stages.0.1"].weight_scale.shape == (8, 1, 1, 1)
    assert not hasattr(layers["stages.0.1"], "act_scale")  # act_bits 32: full-precision inputs
    # a pattern naming a module covers its children; layer_types narrows the kinds
    q2 = quantize(Net(), include="heads")
    assert set(dict(quantized_layers(q2))) == {"heads.seq.0", "heads.seq.3"}
    q3 = quantize(Net(), layer_types=(nn.Linear,))
    assert set(dict(quantized_layers(q3))) == {"hidden"}
    q4 = quantize(Net(), keep_first_last=False, layer_types=[nn.Conv2d])
    assert "stem" in dict(quantized_layers(q4))


@pytest.mark.parametrize("build, kwargs, message", [
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.ConvTranspose2d(2, 2, 2), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"include": ["1"]}, r"cannot quantize '1' \(ConvTranspose2d\): trqat cannot quantize ConvTranspose2d layers"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv3d(2, 2, 1), nn.Linear(2, 2)),
     {"include": "1"}, r"'1' \(Conv3d\).*supported: nn.Conv1d, nn.Conv2d, nn.Linear"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), nn.Linear(2, 2)),
     {}, r"'1' \(Conv2d\): it uses padding_mode='reflect'.*exclude="),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.LazyConv2d(4, 3), nn.Linear(2, 2)),
     {}, r"not initialized yet \(a lazy module\)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Linear(2, 2)),
     {}, r"no layer to quantize.*2 weight layer\(s\); keep_first_last=True keeps the first and the last"),
    (lambda: nn.Sequential(nn.ReLU(), nn.BatchNorm2d(2)),
     {}, r"no layer to quantize.*no Conv1d, Conv2d or Linear layer"),
    (lambda: nn.Linear(3, 3),
     {"keep_first_last": False}, r"the model itself is a single layer"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"include": ["conv*"]}, r"include pattern 'conv\*' matches no module of the model \(module names: 0, 1, 2\)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"layer_types": (nn.ConvTranspose2d,)}, r"layer_types: trqat cannot quantize 'ConvTranspose2d'"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"weight_bits": 9}, r"weight_bits must be an int in 1..8"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"act_bits": 16}, r"act_bits must be an int in 1..8, or 32"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"layer_bits": {"1": 32}}, r"layer_bits\['1'\] must be an int in 1..8, got 32 \(keep a layer in full precision with exclude"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"layer_bits": {"0": 4}}, r"layer_bits pattern '0' matches no layer that is quantized \(they are: 1\)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Linear(2, 2)),
     {"unsigned_act": ["x*"]}, r"unsigned_act pattern 'x\*' matches no module"),
])
@pytest.mark.filterwarnings("ignore:Lazy modules")
def test_refusals_are_clear_and_leave_the_model_unchanged(build, kwargs, message):
    model = build()
    before = [type(m) for m in model.modules()]
    with pytest.raises(ValueError, match=message):
        quantize(model, **kwargs)
    assert [type(m) for m in model.modules()] == before


def test_already_quantized_and_subclasses():
    model = quantize(Net())
    with pytest.raises(ValueError, match=r"no layer to quantize.*6 of them already quantized"):
        quantize(model)

    class Attention(nn.Module):  # torch's MultiheadAttention never calls out_proj.forward
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(8, 8)
            self.attn = nn.MultiheadAttention(8, 2)
            self.mid = nn.Linear(8, 8)
            self.out = nn.Linear(8, 2)

    with pytest.warns(UserWarning, match=r"left these layers in full precision: 'attn.out_proj' \(NonDynamicallyQuantizableLinear\)"):
        q = quantize(Attention())
    assert set(dict(quantized_layers(q))) == {"mid"}
    with pytest.raises(ValueError, match=r"'attn.out_proj'.*subclass of nn.Linear"):
        quantize(Attention(), include=["attn.*"])


def test_layer_kinds_without_a_quantizer_are_named_when_left_in_full_precision():
    def make():
        return nn.Sequential(nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 1), nn.ConvTranspose2d(4, 4, 2), nn.Conv3d(4, 4, 1),
                             nn.Conv2d(4, 4, 1), nn.Linear(4, 2))
    with pytest.warns(UserWarning, match=r"left these layers in full precision: '2' \(ConvTranspose2d\), '3' \(Conv3d\) "
                                         r"\(trqat quantizes nn.Conv1d, nn.Conv2d, nn.Linear only; exclude") as caught:
        q = quantize(make())
    assert caught[0].filename == __file__  # the warning points at the user's quantize() line
    assert set(dict(quantized_layers(q))) == {"1", "4"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(make(), exclude=["2", "3"])  # kept in full precision on purpose: no warning


def test_negative_inputs_to_an_unsigned_quantizer_warn_once():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2))
    quantize(model, signed_act=["4"])
    assert not model[1].act_signed and model[4].act_signed
    x = torch.randn(16, 4)
    with pytest.warns(UserWarning, match=r"layer '1' gets negative inputs.*signed_act=\['1'\]") as caught:
        model(x)
    assert caught[0].filename == __file__  # the user's line, not torch's module.__call__ or Sequential
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x)  # once only
    copy.deepcopy(model)


def test_unsigned_on_purpose_does_not_warn():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.Linear(8, 2))
    quantize(model, unsigned_act=["3"])
    with pytest.warns(UserWarning, match=r"layer '1' gets negative inputs"):
        model(torch.randn(16, 4))  # layer 1 warns; layer 3 (after the GELU, named unsigned) does not
    assert not model[3].act_signed


def test_layer_bits_per_layer_first_pattern_wins():
    model = quantize(Net(), 2, 2, layer_bits={"stages.0.0.*": 1, "stages": 4, "heads.seq.3": 8})
    bits = {n: m.weight_bits for n, m in quantized_layers(model)}
    assert bits == {"stages.0.0.grouped": 1, "stages.0.0.depthwise": 1, "stages.0.1": 4,
                    "heads.seq.0": 2, "heads.seq.3": 8, "hidden": 2}
    for _, m in quantized_layers(model):  # levels and scales follow each layer's own bits
        levels = m.weight_levels()
        alpha, beta, _ = {1: (-1, 1, 1), 2: (-2, 1, 2), 4: (-8, 7, 8), 8: (-128, 127, 128)}[m.weight_bits]
        assert alpha <= int(levels.min()) and int(levels.max()) <= beta
    assert len(torch.unique(model.heads.seq[3].weight_levels())) > 16  # 8 bits: many levels in use
    assert set(torch.unique(model.stages[0][0].grouped.weight_levels()).tolist()) == {-1, 1}  # binary
    # the same through the config's words (managed runs)
    quant = {"weight_bits": 2, "act_bits": 2, "first_last_fp": True, "full_precision": [], "per_channel": False,
             "output_scale": "auto", "layer_bits": {"stages.0.0.*": 1, "stages": 4, "heads.seq.3": 8}}
    managed = quantize_from_config(Net(), quant)
    assert {n: m.weight_bits for n, m in quantized_layers(managed)} == bits
    with pytest.raises(ValueError, match=r"quant: layer_bits pattern 'stem' matches no layer that is quantized"):
        quantize_from_config(Net(), {**quant, "layer_bits": {"stem": 4}})  # the first layer stays full precision


def test_quantize_from_config_speaks_the_config_vocabulary():
    quant = {"weight_bits": 3, "act_bits": 4, "first_last_fp": False, "full_precision": ["heads"], "per_channel": True,
             "output_scale": "on", "layer_bits": {}}
    model = quantize_from_config(Net(), quant)
    layers = dict(quantized_layers(model))
    assert set(layers) == {"stem", "stages.0.0.grouped", "stages.0.0.depthwise", "stages.0.1", "hidden", "fc"}
    assert all(m.has_output_scale and m.per_channel and (m.weight_bits, m.act_bits) == (3, 4) for m in layers.values())
    with pytest.raises(ValueError, match=r"quant.full_precision pattern 'head' matches no module"):
        quantize_from_config(Net(), {**quant, "full_precision": ["head"]})
    with pytest.raises(ValueError, match=r"quant.output_scale must be one of auto, on, off"):
        quantize_from_config(Net(), {**quant, "output_scale": "yes"})
    with pytest.raises(ValueError, match=r"quant: first_last_fp, full_precision, per_channel, output_scale, layer_bits "
                                          r"missing: pass the resolved config's quant section"):
        quantize_from_config(Net(), {"weight_bits": 2, "act_bits": 2})


def test_optional_output_scale():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    quantize(model, output_scale=True)
    assert model[1].has_output_scale and model[1].output_scale.requires_grad


def test_transition_tracker_matches_an_independent_count():
    torch.manual_seed(0)
    model = quantize(Net(), weight_bits=2)
    tracker = TransitionTracker(model)
    assert tracker.update() is None and tracker.rate is None
    names = [n for n, _ in quantized_layers(model)]
    before = {n: m.weight_levels().clone() for n, m in quantized_layers(model)}
    with torch.no_grad():
        for _, m in quantized_layers(model):
            m.weight.add_(torch.randn_like(m.weight) * 0.05)
    counts = tracker.update()
    expected = {n: int((m.weight_levels() != before[n]).sum()) for n, m in quantized_layers(model)}
    assert counts == expected and list(counts) == names
    assert sum(expected.values()) > 0
    assert tracker.total == sum(expected.values())
    assert tracker.rate == pytest.approx(tracker.total / tracker.total_weights)
    assert tracker.update() == {n: 0 for n in names}  # nothing moved since
    # stateless form
    counts0, levels = count_transitions(model)
    assert counts0 is None
    with torch.no_grad():
        model.hidden.weight.mul_(-1)
    counts1, _ = count_transitions(model, levels)
    assert counts1["hidden"] > 0 and counts1["stages.0.1"] == 0
    with pytest.raises(ValueError, match="no quantized layers"):
        TransitionTracker(Net())
