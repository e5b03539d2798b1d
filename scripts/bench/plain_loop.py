"""A plain PyTorch QAT loop: the reference the overhead benchmark compares trqat against.

Same model and quantizer (trqat.models.build_model), same data in memory (trqat.data.build_data, the
same batches as the worker), same optimizer and parameter groups, the same per-step LR assignment,
but no transition counting and no bridge. `--count` adds exactly the worker's counting
(TransitionCounter.update() before each step) and times it separately.

Usage: python plain_loop.py CONFIG.json --steps N --warmup W [--count]
Prints one JSON line: per-step seconds (after warm-up), counting seconds, peak RSS, tracking bytes.
"""
import argparse
import json
import math
import os
import random
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from trqat.data import build_data
from trqat.models import build_model
from trqat.quant import quantized_layers
from trqat.trainer import param_groups
from trqat.transitions import TransitionCounter


def vm_hwm_bytes() -> int:
    """Peak resident set size of this process (VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_optimizer(model, cfg):
    o = cfg["optimizer"]
    groups = param_groups(model, o["weight_decay"])
    if o["name"] == "sgd":
        return torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"])
    if o["name"] == "adam":
        return torch.optim.Adam(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
    if o["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
    raise SystemExit(f"plain_loop: optimizer {o['name']!r} is not in the plain loop")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--count", action="store_true")
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    torch.set_num_threads(cfg["worker"].get("threads") or os.cpu_count() or 1)
    seed = cfg["seed"]
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    device = torch.device("cpu")
    data = build_data(cfg["data"], seed, device)
    model = build_model(cfg).to(device)
    layers = quantized_layers(model)
    for _, m in layers:  # the same quantizer setting as the worker in this mode
        m.freeze_weight_scale(cfg["mode"] == "tr")
    opt = make_optimizer(model, cfg)
    counter = TransitionCounter([m for _, m in layers]) if args.count else None
    model.train()
    base_lr, total = cfg["optimizer"]["lr"], args.steps
    step_s, count_s = [], []
    for t in range(args.steps):
        t0 = time.perf_counter()
        if counter is not None:
            counter.update()
            count_s.append(time.perf_counter() - t0)
        x, y = data.train_batch(t)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = base_lr * 0.5 * (1 + math.cos(math.pi * t / total))  # a cosine schedule, as the controller sends
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        loss.item(), int((logits.argmax(1) == y).sum())  # the worker reads these too
        step_s.append(time.perf_counter() - t0)
    quant_weights = sum(m.weight.numel() for _, m in layers)
    tracking = None
    if counter is not None and counter.prev is not None:
        tracking = sum(p.numel() * p.element_size() for p in counter.prev)
    print(json.dumps({
        "step_s": step_s[args.warmup:],
        "count_s": count_s[args.warmup:],
        "peak_rss": vm_hwm_bytes(),
        "quantized_layers": len(layers),
        "quantized_weights": quant_weights,
        "tracking_bytes": tracking,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
