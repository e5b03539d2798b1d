"""The Python half of export.mjs: exported model sizes, and PyTorch eager inference latency.

  sizes   --models M,... --bits 1,2,4 --out DIR
          each shipped model at its paper input size (ResNet-20: CIFAR-10 32x32; the others:
          ImageNet 224x224, 1000 classes), quantized with the config's defaults at W<b>A<b>,
          converted and written with trqat.save_exported; sizes on disk (bytes) against the same
          container holding the float32 model (exported_size(full_precision=True)), and the
          float32 state dict written by torch.save
  prepare --model M --out DIR
          W2A2 model with activation scales initialised from one random batch: its config and
          training state (training.pt), the converted model (model.trqat) and its ONNX graph (model.onnx)
  time    --dir DIR --batch B --iters N --threads T
          median ms per image of PyTorch eager: the training model (fake quantization, eval mode)
          and the converted model (int8 levels), under torch.no_grad()

Each prints one JSON line.
"""
import argparse
import json
import os
import tempfile
import time
import warnings
from typing import Any, Dict, List

import torch

from trqat.adapt import quantize_from_config
from trqat.convert import convert
from trqat.deploy import export_onnx, exported_size, load_exported, save_exported
from trqat.models import build_fp_model, build_model

QUANT = {"first_last_fp": True, "full_precision": [], "per_channel": False, "output_scale": "auto", "layer_bits": {}}


def model_config(name: str) -> Dict[str, Any]:
    cifar = name == "resnet20"
    return {"name": name, "in_channels": 3, "num_classes": 10 if cifar else 1000, "image_size": 32 if cifar else 224,
            "init_checkpoint": None, "factory": None, "kwargs": {}}


def sizes(models: List[str], bits: List[int], out: str) -> List[Dict[str, Any]]:
    rows = []
    for name in models:
        mcfg = model_config(name)
        torch.manual_seed(0)
        fp = build_fp_model(name, mcfg["in_channels"], mcfg["num_classes"], mcfg["image_size"])
        fp_path = os.path.join(out, f"{name}-fp32.pt")
        torch.save(fp.state_dict(), fp_path)
        row: Dict[str, Any] = {"model": name, "params": sum(p.numel() for p in fp.parameters()),
                               "torch_save_fp32": os.path.getsize(fp_path), "bits": {}}
        os.unlink(fp_path)
        for b in bits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # act scales never initialised: irrelevant to the size
                model = quantize_from_config(build_fp_model(name, mcfg["in_channels"], mcfg["num_classes"],
                                                            mcfg["image_size"]), {**QUANT, "weight_bits": b, "act_bits": b})
                inference = convert(model, inplace=True)
            arch = {k: mcfg[k] for k in ("name", "in_channels", "num_classes", "image_size")}
            path = os.path.join(out, f"{name}-w{b}.trqat")
            row["bits"][str(b)] = save_exported(inference, path, arch)
            row["fp32"] = exported_size(inference, arch, full_precision=True)
            row["quantized_weights"] = sum(m.weight_levels.numel() for m in inference.modules() if hasattr(m, "weight_levels"))
            os.unlink(path)
        rows.append(row)
    return rows


def prepare(name: str, out: str) -> Dict[str, Any]:
    mcfg = model_config(name)
    cfg = {"model": mcfg, "quant": {**QUANT, "weight_bits": 2, "act_bits": 2}, "data": {}}
    torch.manual_seed(0)
    model = build_model(cfg)
    x = torch.randn(8, 3, mcfg["image_size"], mcfg["image_size"])
    with torch.no_grad():
        model.train()(x)  # activation scales from this batch
    model.eval()
    inference = convert(model).eval()
    os.makedirs(out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out, "training.pt"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    save_exported(inference, os.path.join(out, "model.trqat"), {k: mcfg[k] for k in ("name", "in_channels", "num_classes", "image_size")})
    export_onnx(inference, os.path.join(out, "model.onnx"), x[:1])
    return {"model": name, "input_shape": [3, mcfg["image_size"], mcfg["image_size"]]}


def time_eager(folder: str, batch: int, iters: int, threads: int) -> Dict[str, Any]:
    torch.set_num_threads(threads)
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    training = build_model(cfg)
    training.load_state_dict(torch.load(os.path.join(folder, "training.pt")))
    training.eval()
    inference = load_exported(os.path.join(folder, "model.trqat"))
    size = cfg["model"]["image_size"]
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    out: Dict[str, Any] = {"torch": torch.__version__}
    with torch.no_grad():
        for key, model in (("fake_quant", training), ("int_levels", inference)):
            model(x)  # warm-up
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
            times.sort()
            out[key] = 1000 * times[len(times) // 2] / batch
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=("sizes", "prepare", "time"))
    ap.add_argument("--models", default="resnet20")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--bits", default="1,2,4")
    ap.add_argument("--out", default=tempfile.gettempdir())
    ap.add_argument("--dir")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.command == "sizes":
        torch.set_num_threads(args.threads)
        result: Any = sizes(args.models.split(","), [int(b) for b in args.bits.split(",")], args.out)
    elif args.command == "prepare":
        torch.set_num_threads(args.threads)
        result = prepare(args.model, args.out)
    else:
        result = time_eager(args.dir, args.batch, args.iters, args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
