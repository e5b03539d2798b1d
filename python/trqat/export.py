"""The Python half of `trqat export`: one checkpoint of a run folder to a deployable file.

Usage (the controller's `trqat export RUN_DIR` resolves the checkpoint and calls this):

    python -m trqat.export --config RUN/config.json --checkpoint RUN/checkpoints/step-NNNNNNN \\
        --format trqat|onnx --output PATH [--verify-samples N] [--verify-dir DIR]

1. Rebuilds the run's model (config.json), loads the checkpoint's weights (worker.pt) and converts
   it (trqat.convert): int8 levels and scales instead of latent weights.
2. Evaluates the checkpoint on the first N samples of the run's test set (N = --verify-samples, all
   by default; 0 skips the checks) and requires the converted model's logits to equal them bit for
   bit.
3. Writes the file. trqat format: reloads it (trqat.load_exported) and requires the same logits
   again. onnx: writes the inputs, labels and PyTorch logits to --verify-dir for the controller,
   which runs the graph in ONNX Runtime and compares.

Progress goes to stdout as it happens, one JSON object a line: {"progress": {"phase", "done",
"total"}} (phases: checkpoint, convert, test-set, write, verify; trqat.progress throttles them to
about one a second). The last line on stdout is one JSON object: {"ok": true, ...the figures} or
{"ok": false, "error": message}. Exit codes: 0 done, 1 failed, 2 bad usage.
"""
import argparse
import json
import os
import sys
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from . import progress
from .convert import convert, int_layers
from .deploy import export_onnx, exported_size, load_exported, save_exported
from .quant import quantized_layers
from .protocol import EXPORT_FORMATS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ARCH_KEYS = ("name", "in_channels", "num_classes", "image_size", "factory", "kwargs")


class ExportError(Exception):
    """What the user must hear, without a traceback."""


def load_run_model(config: Dict[str, Any], checkpoint_dir: str) -> Tuple[nn.Module, int]:
    """The run's training model with the checkpoint's weights, in eval mode, and its step."""
    from .models import build_model  # torchvision is imported only here
    from . import safe_io
    from .checkpoint import CHECKPOINT_FILE

    path = os.path.join(checkpoint_dir, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise ExportError(f"checkpoint {checkpoint_dir} has no {CHECKPOINT_FILE}")
    cfg = {**config, "model": {**config["model"], "init_checkpoint": None}}  # the checkpoint replaces it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the weight_bits 32 warning: the error below says it better
        model = build_model(cfg)
    try:
        state = safe_io.load(path)  # weights-only: no code runs from a checkpoint
        model.load_state_dict(state["model"])
    except Exception as e:
        raise ExportError(f"cannot load {path} into the run's model: {type(e).__name__}: {e}") from None
    return model.eval(), int(state.get("step", -1))


def test_batches(config: Dict[str, Any], limit: Optional[int]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """The run's test set in its eval batches, cut after `limit` samples (None: all)."""
    from .data import build_data

    if limit == 0:
        return
    data = build_data(config["data"], config["seed"], torch.device("cpu"))
    seen = 0
    for x, y in data.test_batches():
        if limit is not None and seen + len(y) > limit:
            x, y = x[: limit - seen], y[: limit - seen]
        seen += len(y)
        yield x, y
        if limit is not None and seen >= limit:
            return


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def run_export(config: Dict[str, Any], checkpoint_dir: str, fmt: str, output: str,
               verify_samples: Optional[int], verify_dir: Optional[str]) -> Dict[str, Any]:
    progress.phase("checkpoint")
    model, step = load_run_model(config, checkpoint_dir)
    if not quantized_layers(model):
        raise ExportError(f"the run's model has no quantized layers (quant.weight_bits is "
                          f"{config['quant']['weight_bits']}): export writes low-bit models")
    progress.phase("convert")
    inference = convert(model).eval()
    arch = {k: config["model"][k] for k in ARCH_KEYS}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if verify_samples != 0:
        progress.phase("test-set")
    batches = list(test_batches(config, verify_samples))
    if not batches and verify_samples != 0:
        raise ExportError("the run's test set is empty: nothing to check the export on (pass --verify-samples 0 to skip)")
    example = batches[0][0][:1] if batches else _example_input(config)
    progress.phase("write")
    if fmt == "trqat":
        size = save_exported(inference, output, arch)
        reloaded = load_exported(output)
    else:
        size = export_onnx(inference, output, example)
        reloaded = None
    correct = samples = 0
    logits_all: List[torch.Tensor] = []
    total = sum(len(y) for _, y in batches)
    if batches:
        progress.report("verify", 0, total)
    for x, y in batches:
        reference = _logits(model, x)  # PyTorch's evaluation of the checkpoint
        if not torch.equal(_logits(inference, x), reference):
            raise ExportError("the converted model's logits differ from the checkpoint's (a trqat.convert bug: "
                              "please report it)")
        if reloaded is not None and not torch.equal(_logits(reloaded, x), reference):
            raise ExportError(f"the model reloaded from {output} computes other logits than the checkpoint "
                              "(a bug of the trqat format: please report it)")
        correct += int((reference.argmax(1) == y).sum())
        samples += len(y)
        logits_all.append(reference)
        progress.report("verify", samples, total)
    if fmt == "onnx" and verify_dir is not None and batches:
        _write_verify_bundle(verify_dir, batches, logits_all, config)
    layers = int_layers(inference)
    bits: Dict[str, int] = {}
    for _, layer in layers:
        bits[str(layer.weight_bits)] = bits.get(str(layer.weight_bits), 0) + 1
    return {
        "ok": True, "format": fmt, "path": os.path.abspath(output), "bytes": size,
        "fp32_bytes": exported_size(inference, arch, full_precision=True), "step": step,
        "layers": len(layers), "weight_bits": bits,
        "quantized_weights": sum(layer.weight_levels.numel() for _, layer in layers),
        "samples": samples, "pytorch_top1": 100.0 * correct / samples if samples else None,
        "reloaded_identical": reloaded is not None and samples > 0,
    }


def _example_input(config: Dict[str, Any]) -> torch.Tensor:
    m = config["model"]
    return torch.zeros(1, m["in_channels"], m["image_size"], m["image_size"])


def _write_verify_bundle(folder: str, batches: List[Tuple[torch.Tensor, torch.Tensor]],
                         logits: List[torch.Tensor], config: Dict[str, Any]) -> None:
    """inputs.f32 [N, ...input shape], labels.i32 [N], logits.f32 [N, classes] (little-endian raw),
    verify.json: what the controller needs to read them."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "inputs.f32"), "wb") as f:
        for x, _ in batches:
            f.write(x.contiguous().numpy().astype("<f4").tobytes())
    with open(os.path.join(folder, "labels.i32"), "wb") as f:
        f.write(torch.cat([y for _, y in batches]).numpy().astype("<i4").tobytes())
    with open(os.path.join(folder, "logits.f32"), "wb") as f:
        f.write(torch.cat(logits).numpy().astype("<f4").tobytes())
    info = {"samples": sum(len(y) for _, y in batches), "input_shape": list(batches[0][0].shape[1:]),
            "classes": int(logits[0].shape[1]), "batch_size": int(config["data"]["eval_batch_size"])}
    with open(os.path.join(folder, "verify.json"), "w") as f:
        json.dump(info, f)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trqat.export", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the run's config.json (resolved)")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint folder (holds worker.pt)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--verify-samples", type=int, default=None, help="test samples to check on (default all; 0: none)")
    parser.add_argument("--verify-dir", default=None, help="onnx: where to write the check's inputs and logits")
    args = parser.parse_args(argv)  # exits 2 with a usage message
    debug = bool(os.environ.get("TRQAT_DEBUG"))
    progress.set_sink(_print_progress)
    try:
        with open(args.config) as f:
            config = json.load(f)
        # worker.threads null: every core (what a worker on its own would get)
        torch.set_num_threads(config["worker"]["threads"] or os.cpu_count() or 1)
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")  # tracer and exporter chatter; the checks below are the verdict
            result = run_export(config, args.checkpoint, args.format, args.output, args.verify_samples, args.verify_dir)
    except ExportError as e:
        return _fail(str(e))
    except Exception as e:  # a message, not a traceback (TRQAT_DEBUG=1 shows it)
        if debug:
            raise
        return _fail(f"{type(e).__name__}: {e}" if not isinstance(e, (OSError, ValueError)) else str(e))
    print(json.dumps(result), flush=True)
    return EXIT_OK


def _print_progress(phase: str, done: int, total: Optional[int]) -> None:
    print(json.dumps({"progress": {"phase": phase, "done": done, "total": total}}), flush=True)


def _fail(message: str) -> int:
    print(json.dumps({"ok": False, "error": message}), flush=True)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
