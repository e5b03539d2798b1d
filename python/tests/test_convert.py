"""trqat.convert (int8 levels instead of latent weights), to_float, and the deployable files."""
import copy
import json
import math
import struct

import numpy as np
import pytest
import torch
import torch.nn as nn

from test_adapt import Net
from test_models import EXPECTED, image_config
from test_quant import ref_levels
from trqat import convert, export_onnx, load_exported, quantize, save_exported
from trqat.convert import IntConv1d, IntConv2d, IntLayer, IntLinear, int_layers
from trqat.deploy import ExportFormatError, exported_size, pack_levels, read_exported, unpack_levels
from trqat.models import build_model
from trqat.quant import FP_BITS, QuantLayer, quantized_layers


def trained(model, x, steps=2):
    """A few SGD steps (activation scales initialised from data, weights moved), then eval mode."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(x).logsumexp(1).mean().backward()
        opt.step()
    return model.eval()


def check_levels_against_reference(model, inference):
    """Every inference layer's levels: numpy's round(clip(gamma w / s)) of the training layer's
    latent weights, stored as int8; its buffers are the training layer's scales and bias."""
    layers = dict(quantized_layers(model))
    converted = dict(int_layers(inference))
    assert list(converted) == list(layers)
    for name, q in layers.items():
        layer = converted[name]
        assert layer.weight_levels.dtype == torch.int8 and not hasattr(layer, "weight")
        w = q.weight.detach().numpy()
        s = q.weight_scale.detach().numpy()
        expected = ref_levels(w, np.broadcast_to(s, w.shape) if q.per_channel else s, q.weight_bits, True)
        np.testing.assert_array_equal(layer.weight_levels.numpy(), expected)
        assert torch.equal(layer.weight_scale, q.weight_scale.detach())
        assert (layer.weight_bits, layer.act_bits, layer.act_signed, layer.has_output_scale) == \
            (q.weight_bits, q.act_bits, q.act_signed, q.has_output_scale)
        if q.act_bits != FP_BITS:
            assert torch.equal(layer.act_scale, q.act_scale.detach())
        if q.has_output_scale:
            assert torch.equal(layer.output_scale, q.output_scale.detach())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_converted_shipped_models_compute_the_same_logits_bit_for_bit(name):
    """Every shipped model: ReActNet binary weights and signed binary activations, DeiT output
    scales and signed inputs, MobileNetV2 signed and unsigned inputs; per-channel scales on every
    other model."""
    torch.manual_seed(0)
    per_channel = name in ("resnet20", "resnet34", "mobilenetv2", "deit_tiny", "reactnet18")
    cfg = image_config(name, **{"quant.per_channel": per_channel})
    size = cfg["model"]["image_size"]
    x = torch.randn(2, 3, size, size)
    model = build_model(cfg)
    with torch.no_grad():
        model.train()(x)  # the first training batch initialises the activation scales
    model.eval()
    inference = convert(model).eval()
    assert len(int_layers(inference)) == EXPECTED[name][0]
    assert not any(isinstance(m, QuantLayer) for m in inference.modules())
    assert any(isinstance(m, QuantLayer) for m in model.modules())  # a copy: the training model is untouched
    expected = model(x)  # with gradients on, as a user calls it: the weights take the STE path
    with torch.no_grad():
        assert torch.equal(inference(x), expected)
    check_levels_against_reference(model, inference)


def test_a_model_quantized_with_trqat_quantize_mixed_bits_conv1d():
    torch.manual_seed(1)
    model = quantize(Net(), 2, 3, layer_bits={"stages.0.0.grouped": 1, "heads.seq.3": 8}, per_channel=True,
                     output_scale=["hidden"], signed_act=["heads.seq.0"])
    x = torch.randn(8, 3, 8, 8)
    trained(model, x, steps=3)
    inference = convert(model).eval()
    kinds = {n: type(m) for n, m in int_layers(inference)}
    assert kinds == {"stages.0.0.grouped": IntConv2d, "stages.0.0.depthwise": IntConv2d, "stages.0.1": IntConv2d,
                     "heads.seq.0": IntConv1d, "heads.seq.3": IntConv1d, "hidden": IntLinear}
    assert torch.equal(inference(x), model(x))
    check_levels_against_reference(model, inference)
    # an independent forward of one layer: F.conv2d with numpy's levels / gamma and quantized inputs
    layer = inference.stages[0][1]
    xin = torch.rand(2, 8, 6, 6) * 2
    sa = layer.act_scale.item()
    xq = torch.from_numpy(ref_levels(xin.numpy(), sa, 3, False)).float() / 8
    w = layer.weight_levels.float() / 2
    torch.testing.assert_close(layer(xin), nn.functional.conv2d(xq, w, None, 2), rtol=0, atol=1e-6)


def test_convert_in_place_warns_about_untrained_activation_scales():
    model = quantize(Net(), 2, 2)
    with pytest.warns(UserWarning, match=r"layer 'stages.0.0.grouped' never saw a training batch"):
        out = convert(model, inplace=True)
    assert out is model and len(int_layers(model)) == 6
    with pytest.raises(ValueError, match="no quantized layers"):
        convert(nn.Sequential(nn.Linear(2, 2)))


def test_to_float_gives_back_the_float_layers():
    torch.manual_seed(2)
    fp = Net().eval()
    x = torch.randn(4, 3, 8, 8)
    expected = fp(x)
    model = quantize(copy.deepcopy(fp), 2, 2)
    for name, q in quantized_layers(model):
        f = q.to_float()
        assert type(f) is q.float_type and f.weight is q.weight and (f.bias is q.bias)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, f)
    assert torch.equal(model.eval()(x), expected)


# --- the trqat file format ------------------------------------------------------------------------
def test_bit_packing_layout_by_hand():
    """2 bits: levels -2, -1, 0, 1 are codes 0, 1, 2, 3, LSB first: bits 00 10 01 11 -> 0b11100100."""
    assert pack_levels(torch.tensor([-2, -1, 0, 1], dtype=torch.int8), 2).tolist() == [0b11100100]
    # binary: +1 -> 1, -1 -> 0; nine weights need two bytes
    signs = torch.tensor([1, -1, -1, 1, 1, 1, -1, -1, 1], dtype=torch.int8)
    assert pack_levels(signs, 1).tolist() == [0b00111001, 0b1]
    # 3 bits across byte borders: codes 7, 0, 5 (levels 3, -4, 1) -> 111 000 101
    assert pack_levels(torch.tensor([3, -4, 1], dtype=torch.int8), 3).tolist() == [0b01000111, 0b1]
    with pytest.raises(ValueError, match="outside the 2-bit range"):
        pack_levels(torch.tensor([2], dtype=torch.int8), 2)


@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_packing_round_trips(bits):
    gen = torch.Generator().manual_seed(bits)
    alpha, beta = (-1, 1) if bits == 1 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    levels = torch.randint(alpha, beta + 1, (5, 3, 7), generator=gen).to(torch.int8)
    if bits == 1:
        levels = torch.where(levels >= 0, 1, -1).to(torch.int8)
    packed = pack_levels(levels, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(levels.numel() * bits / 8)
    assert torch.equal(unpack_levels(packed, bits, tuple(levels.shape)), levels)


def read_independently(path):
    """The safetensors layout, parsed here without trqat: header, tensors, offsets."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert n % 8 == 0 and data[:2] != b"PK" and data[0] != 0x80  # neither a torch zip nor a pickle
    meta = header.pop("__metadata__")
    end = 0
    for name, entry in header.items():  # contiguous, in order, sizes as the shapes say
        begin, stop = entry["data_offsets"]
        assert begin == end, name
        end = stop
    assert 8 + n + end == len(data)
    return meta, header


def test_exported_file_is_small_reloads_bit_for_bit_and_needs_no_pickle(tmp_path):
    torch.manual_seed(3)
    cfg = image_config("resnet20", **{"quant.layer_bits": {"layers.0.*": 1, "layers.8.*": 4}})
    x = torch.randn(4, 3, 32, 32)
    model = trained(build_model(cfg), x)
    inference = convert(model).eval()
    arch = {k: cfg["model"][k] for k in ("name", "in_channels", "num_classes", "image_size")}
    path = str(tmp_path / "m.trqat")
    size = save_exported(inference, path, arch)
    assert size == exported_size(inference, arch) == (tmp_path / "m.trqat").stat().st_size
    meta, header = read_independently(path)
    assert meta["format"] == "trqat-export" and meta["version"] == "1"
    info = json.loads(meta["trqat"])
    bits = {n: spec["weight_bits"] for n, spec in info["layers"].items()}
    assert bits["layers.0.conv1"] == 1 and bits["layers.8.conv2"] == 4 and bits["layers.4.conv1"] == 2
    for name, q in quantized_layers(model):
        entry = header[f"{name}.weight_levels"]
        assert entry["dtype"] == "U8" and entry["shape"] == [math.ceil(q.weight.numel() * q.weight_bits / 8)]
        assert header[f"{name}.weight_scale"]["dtype"] == "F32"
    assert header["bn1.running_mean"]["dtype"] == "F32" and header["conv1.weight"]["dtype"] == "F32"  # FP stays FP
    reloaded = load_exported(path)
    assert not reloaded.training
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))
    # against the float model: its state in float32, in the same container
    float_bytes = sum(t.numel() * t.element_size() for k, t in model.state_dict().items()
                      if k.rpartition(".")[2] not in ("weight_scale", "act_scale", "act_initialized", "output_scale"))
    fp = exported_size(inference, arch, full_precision=True)
    assert 0 < fp - float_bytes < 16384 and fp > 8 * size


def test_own_model_needs_its_architecture_and_mismatches_are_named(tmp_path):
    torch.manual_seed(4)
    x = torch.randn(4, 3, 8, 8)
    model = trained(quantize(Net(), 2, 2), x)
    path = str(tmp_path / "net.trqat")
    save_exported(convert(model), path)
    with pytest.raises(ValueError, match=r"does not record how to build its model.*load_exported\(path, model=MyNet\(\)\)"):
        load_exported(path)
    with torch.no_grad():
        assert torch.equal(load_exported(path, model=Net())(x), model(x))  # from the float model
        assert torch.equal(load_exported(path, model=quantize(Net()))(x), model(x))  # or a quantized one

    class Wider(Net):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(16, 64, bias=False)
    with pytest.raises(ValueError, match=r"layer 'hidden' of the model \(Linear, weight shape \[64, 16\]\) does not match the file's"):
        load_exported(path, model=Wider())


def test_files_that_are_not_exports_get_clear_errors(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "pickle.pt")
    with pytest.raises(ExportFormatError, match="is not a trqat export file"):
        read_exported(str(tmp_path / "pickle.pt"))
    model = trained(quantize(Net(), 2, 2), torch.randn(2, 3, 8, 8), steps=1)
    good = tmp_path / "good.trqat"
    save_exported(convert(model), str(good))
    data = good.read_bytes()
    (tmp_path / "short.trqat").write_bytes(data[:-5])
    with pytest.raises(ExportFormatError, match=r"is damaged: tensor"):
        read_exported(str(tmp_path / "short.trqat"))
    with pytest.raises(ExportFormatError, match="cannot read"):
        read_exported(str(tmp_path / "missing.trqat"))


def test_onnx_graph_holds_int8_levels_behind_dequantize_linear(tmp_path):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 32, 32)
    model = trained(build_model(image_config("resnet20")), x, steps=1)
    inference = convert(model).eval()
    path = str(tmp_path / "m.onnx")
    size = export_onnx(inference, path, x[:1])
    data = open(path, "rb").read()
    assert size == len(data) and b"DequantizeLinear" in data and b"Round" in data and b"Clip" in data
    # int8 levels: far smaller than the float32 weights of the 18 quantized layers
    quantized = sum(q.weight.numel() for _, q in quantized_layers(model))
    assert size < 2 * quantized
    assert isinstance(inference.layers[0].conv1, IntLayer)
