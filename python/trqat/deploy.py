"""Deployable files of a converted (inference) model: the trqat format and ONNX.

    inference = trqat.convert(model).eval()
    trqat.save_exported(inference, "model.trqat", arch={"name": "resnet20", ...})   # or arch=None
    model = trqat.load_exported("model.trqat")            # (or load_exported(path, model=MyNet()))
    trqat.export_onnx(inference, "model.onnx", torch.zeros(1, 3, 32, 32))

The trqat format is the safetensors layout, written and read here without pickle (nothing in the
file is ever executed):

    8 bytes      N, the header length (unsigned 64-bit little-endian)
    N bytes      the header: JSON (UTF-8, padded with spaces to a multiple of 8)
                   {"__metadata__": {"format": "trqat-export", "version": "1", "trqat": "<JSON>"},
                    "<tensor name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...}
    the rest     the tensors' raw little-endian bytes, one after another (offsets from here)

The tensors are the inference model's state dict, with one change: a quantized layer's
`<layer>.weight_levels` (int8 in memory) is stored bit-packed at the layer's bit-width, as U8 bytes.
Level l of a b-bit layer is stored as the code c = l + 2^(b-1) (b = 1: c = 1 for +1, 0 for -1),
b bits per weight, least significant bit first, weights in row-major order, packed into bytes
least significant bit first. Everything else (the weight, activation and output scales, biases,
BN, full-precision layers) is stored as it is. The "trqat" metadata entry holds, as JSON:

    {"layers": {"<layer name>": {"kind", "weight_bits", "act_bits", "act_signed", "per_channel",
                                 "output_scale", "bias", "weight_shape", <geometry>}, ...},
     "arch": the model config {"name", "in_channels", "num_classes", "image_size", "factory",
             "kwargs"} when the model is one trqat can build (managed runs), else null,
     "trqat_version": "..."}

ONNX: the inference graph with int8 weight levels behind a DequantizeLinear (scale 1/gamma, exact)
and the activation quantizers as Div, Clip, Round, Div (round half to even, as torch.round), at opset
convert.ONNX_OPSET. torch.onnx's TorchScript exporter writes it (no `onnx` package needed).
"""
import inspect
import json
import os
import struct
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from . import __version__
from .convert import ONNX_OPSET, IntLayer, int_layers
from .quant import qrange, replace_module

__all__ = ["save_exported", "load_exported", "read_exported", "export_onnx", "pack_levels", "unpack_levels",
           "exported_size", "FORMAT", "FORMAT_VERSION"]

FORMAT, FORMAT_VERSION = "trqat-export", "1"
_MAX_HEADER = 100 * 2**20  # a header longer than this is a damaged or foreign file

_DTYPES: Dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
_NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ITEMSIZE = {k: np.dtype(v).itemsize for k, v in _NUMPY.items()}


class ExportFormatError(ValueError):
    """The file is not a trqat export, or it is damaged."""


# --- bit packing ---------------------------------------------------------------------------------
def _codes(levels: torch.Tensor, bits: int) -> np.ndarray:
    flat = levels.detach().cpu().to(torch.int16).flatten().numpy()
    if bits == 1:
        return (flat > 0).astype(np.uint8)
    return (flat + 2 ** (bits - 1)).astype(np.uint8)


def pack_levels(levels: torch.Tensor, bits: int) -> torch.Tensor:
    """int8 weight levels of a `bits`-bit layer -> ceil(numel * bits / 8) bytes (uint8), see the
    module docstring for the layout."""
    alpha, beta, _ = qrange(bits, True)
    if levels.numel() and (int(levels.min()) < alpha or int(levels.max()) > beta or (bits == 1 and bool((levels == 0).any()))):
        raise ValueError(f"levels outside the {bits}-bit range {alpha}..{beta}")
    codes = _codes(levels, bits)
    planes = (codes[:, None] >> np.arange(bits, dtype=np.uint8)) & 1  # [n, bits], LSB first
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack_levels(packed: torch.Tensor, bits: int, shape: Tuple[int, ...]) -> torch.Tensor:
    """The inverse of pack_levels: int8 levels of `shape`."""
    n = int(np.prod(shape)) if len(shape) else 1
    if packed.numel() != (n * bits + 7) // 8:
        raise ExportFormatError(f"{packed.numel()} packed bytes cannot hold {n} weights of {bits} bits")
    planes = np.unpackbits(packed.numpy(), count=n * bits, bitorder="little").reshape(n, bits)
    codes = (planes.astype(np.int16) << np.arange(bits, dtype=np.int16)).sum(1)
    levels = codes * 2 - 1 if bits == 1 else codes - 2 ** (bits - 1)
    return torch.from_numpy(levels.astype(np.int8)).reshape(shape)


# --- the container -------------------------------------------------------------------------------
def _header(entries: List[Tuple[str, str, List[int], int]], metadata: Mapping[str, str]) -> bytes:
    header: Dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, dtype, shape, nbytes in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def _entries(state: Mapping[str, torch.Tensor], packed_bits: Mapping[str, int]) -> List[Tuple[str, str, List[int], int]]:
    out = []
    for name, t in state.items():
        if name in packed_bits:
            out.append((name, "U8", [(t.numel() * packed_bits[name] + 7) // 8], (t.numel() * packed_bits[name] + 7) // 8))
        else:
            dtype = _DTYPES.get(t.dtype)
            if dtype is None:
                raise ValueError(f"cannot export tensor {name} of dtype {t.dtype}")
            out.append((name, dtype, list(t.shape), t.numel() * _ITEMSIZE[dtype]))
    return out


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().astype(np.dtype(t.numpy().dtype).newbyteorder("<"), copy=False).tobytes()


def _metadata(model: nn.Module, arch: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    layers = {name: layer.spec() for name, layer in int_layers(model)}
    meta = {"layers": layers, "arch": dict(arch) if arch is not None else None, "trqat_version": __version__}
    return {"format": FORMAT, "version": FORMAT_VERSION, "trqat": json.dumps(meta)}


def _packed_bits(model: nn.Module) -> Dict[str, int]:
    return {f"{name}.weight_levels": layer.weight_bits for name, layer in int_layers(model)}


def save_exported(model: nn.Module, path: str, arch: Optional[Mapping[str, Any]] = None) -> int:
    """Write a converted model (trqat.convert) to `path` in the trqat format; return its size in
    bytes. `arch`: the model config that rebuilds the architecture ({"name", "in_channels",
    "num_classes", "image_size"} of a trqat model, or {"factory", "kwargs"}); None for your own
    model, which you then pass to load_exported. Written to a temporary file, then renamed."""
    if not int_layers(model):
        raise ValueError("save_exported needs a converted model (trqat.convert(model)): it has no IntLayer")
    state = model.state_dict()
    packed = _packed_bits(model)
    header = _header(_entries(state, packed), _metadata(model, arch))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for name, t in state.items():
                f.write(pack_levels(t, packed[name]).numpy().tobytes() if name in packed else _tensor_bytes(t))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return os.path.getsize(path)


def exported_size(model: nn.Module, arch: Optional[Mapping[str, Any]] = None, full_precision: bool = False) -> int:
    """The size in bytes save_exported writes for this converted model; full_precision=True: the
    same container holding the float model instead (float32 weights in place of the packed levels
    and the quantizer scales), the reference the size is compared with."""
    state = model.state_dict()
    packed = _packed_bits(model)
    entries = _entries(state, packed)
    if full_precision:
        quant_keys = {f"{n}.{k}" for n, _ in int_layers(model) for k in ("weight_scale", "act_scale", "output_scale")}
        entries = [(n.replace(".weight_levels", ".weight"), "F32", list(state[n].shape), state[n].numel() * 4)
                   if n in packed else (n, d, s, b) for n, d, s, b in entries if n not in quant_keys]
    return 8 + len(_header(entries, _metadata(model, arch))) + sum(e[3] for e in entries)


def read_exported(path: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(the trqat metadata, the stored tensors as they are in the file: packed levels as uint8)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    what = f"{path} is not a trqat export file"
    if len(data) < 8:
        raise ExportFormatError(f"{what} (it is {len(data)} bytes long)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(_MAX_HEADER, len(data) - 8):
        raise ExportFormatError(f"{what} (no valid header)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        meta = header.pop("__metadata__")
        if meta.get("format") != FORMAT:
            raise ExportFormatError(f"{what} (format {meta.get('format')!r})")
        if meta.get("version") != FORMAT_VERSION:
            raise ExportFormatError(f"{path} is trqat export format version {meta.get('version')}; this trqat "
                                    f"reads version {FORMAT_VERSION}")
        info = json.loads(meta["trqat"])
    except ExportFormatError:
        raise
    except Exception as e:  # not JSON, no metadata: another kind of file, or a damaged one
        raise ExportFormatError(f"{what} ({type(e).__name__}: {e})") from None
    body = memoryview(data)[8 + n:]
    tensors: Dict[str, torch.Tensor] = {}
    end = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, stop) = entry["dtype"], [int(v) for v in entry["shape"]], entry["data_offsets"]
            count = int(np.prod(shape)) if shape else 1
            if begin != end or stop > len(body) or stop - begin != count * _ITEMSIZE[dtype]:
                raise ValueError("its data offsets do not fit")
        except Exception as e:
            raise ExportFormatError(f"{path} is damaged: tensor {name!r} ({e})") from None
        array = np.frombuffer(body, dtype=np.dtype(_NUMPY[dtype]).newbyteorder("<"), count=count, offset=begin)
        t = torch.from_numpy(array.astype(_NUMPY[dtype]).reshape(shape))
        tensors[name] = t.view(torch.bfloat16) if dtype == "BF16" else t
        end = stop
    if end != len(body):
        raise ExportFormatError(f"{path} is damaged: {len(body) - end} bytes after the last tensor")
    return info, tensors


def _build_arch(arch: Mapping[str, Any]) -> nn.Module:
    from .models import build_fp_model  # the models need torchvision; import only when used
    from .factories import call_factory

    # `arch` is whatever save_exported was given (a user may write just name and sizes): factory optional.
    if arch.get("factory"):
        return call_factory(arch["factory"], arch.get("kwargs") or {}, "model.factory")
    return build_fp_model(arch["name"], arch["in_channels"], arch["num_classes"], arch["image_size"])


def load_exported(path: str, model: Optional[nn.Module] = None) -> nn.Module:
    """The inference model stored in `path` (eval mode, on the CPU). The architecture is rebuilt
    from the file's record (models trqat can build), or taken from `model`: the float model, or a
    quantized or converted one, of the same architecture (changed in place and returned)."""
    info, tensors = read_exported(path)
    if model is None:
        if info.get("arch") is None:
            raise ValueError(f"{path} does not record how to build its model (it was saved from your own model): "
                             "pass the model, load_exported(path, model=MyNet())")
        model = _build_arch(info["arch"])
    for name, spec in info["layers"].items():
        try:
            current = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{path} has a quantized layer '{name}' that the model does not have") from None
        weight = current.weight_levels if isinstance(current, IntLayer) else getattr(current, "weight", None)
        if not isinstance(weight, torch.Tensor) or list(weight.shape) != list(spec["weight_shape"]):
            got = "no weight" if weight is None else f"weight shape {list(weight.shape)}"
            raise ValueError(f"{path}: layer '{name}' of the model ({type(current).__name__}, {got}) does not match "
                             f"the file's ({spec['kind']}, weight shape {spec['weight_shape']})")
        replace_module(model, name, IntLayer.from_spec(spec))
    state = {}
    for key, t in tensors.items():
        layer = key[: -len(".weight_levels")] if key.endswith(".weight_levels") else None
        if layer in info["layers"]:
            spec = info["layers"][layer]
            t = unpack_levels(t, spec["weight_bits"], tuple(spec["weight_shape"]))
        state[key] = t
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path} does not match the model: {e}") from None
    return model.eval()


# --- ONNX ----------------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: str, example: torch.Tensor) -> int:
    """Write the converted model's inference graph to `path` (ONNX, opset convert.ONNX_OPSET, a
    dynamic batch dimension; input "input", output "logits"); return the file size. `example`: an
    input batch of the right shape. Uses torch.onnx's TorchScript exporter (torch 1.13 and 2.x)."""
    if not int_layers(model):
        raise ValueError("export_onnx needs a converted model (trqat.convert(model))")
    was_training = model.training
    model.eval()
    kwargs: Dict[str, Any] = dict(input_names=["input"], output_names=["logits"], opset_version=ONNX_OPSET,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch >= 2.9 defaults to the dynamo exporter, which needs onnx and onnxscript
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the exporter's notes on shapes and constant folding, and torch 1.13's deprecation of g.op
            # in symbolic functions (the API torch 2.x keeps): not the user's business
            warnings.filterwarnings("ignore", module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=r".*_graph_op")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(model, (example,), tmp, **kwargs)
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return os.path.getsize(path)
