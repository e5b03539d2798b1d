"""A plain PyTorch QAT loop: the reference the overhead benchmark compares trqat against.

Same model and quantizer (trqat.models.build_model), same data in memory (trqat.data.build_data, the
same batches as the worker), same optimizer and parameter groups, the same per-step LR assignment,
but no transition counting and no bridge. `--count` adds exactly the worker's counting
(TransitionCounter.update() before each step) and times it separately. `--client` is the loop as
a user's script under `trqat run` has it: `trqat.client.Client` counts, reports each step and sets
the LRs the controller sends, in place of the loop's own schedule (docs/plugin.md). Started as several
processes with the torch.distributed environment (RANK, WORLD_SIZE, MASTER_*), it is a plain
DistributedDataParallel QAT loop (gloo), each rank on its share of the same global batches.

Usage: python plain_loop.py CONFIG.json --steps N --warmup W [--count | --client]
       trqat run --set ... -- python plain_loop.py CONFIG.json --steps N --warmup W --client
Prints one JSON line (per rank): per-step seconds (after warm-up), counting seconds, peak RSS, tracking bytes.
"""
import argparse
import contextlib
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
from trqat import distributed
from trqat.groups import param_groups
from trqat.trainer import AMP_DTYPES, resolve_device
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
    ap.add_argument("--client", action="store_true", help="under `trqat run`: the controller sets the LRs")
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    torch.set_num_threads(cfg["worker"]["threads"] or os.cpu_count() or 1)
    ranks = distributed.ranks_from_env()
    seed = cfg["seed"]
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    device = resolve_device(cfg["worker"]["device"], ranks.local_rank)
    cuda = device.type == "cuda"
    amp = AMP_DTYPES.get(cfg["worker"]["amp"]) if cuda else None
    channels_last = cfg["worker"]["channels_last"]
    distributed.init(ranks, device)
    data = build_data(cfg["data"], seed, device, ranks)
    model = build_model(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    layers = quantized_layers(model)
    for _, m in layers:  # the same quantizer setting as the worker in this mode
        m.freeze_weight_scale(cfg["mode"] == "tr")
    opt = make_optimizer(model, cfg)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None) if distributed.active() else model
    counter = TransitionCounter([m for _, m in layers]) if args.count else None
    client = None
    if args.client:
        from trqat.client import Client  # only under `trqat run`: it connects to the controller at once

        client = Client(model=model, optimizer=opt, total_steps=args.steps)
    model.train()
    base_lr, total = cfg["optimizer"]["lr"], args.steps
    step_s, count_s = [], []
    scaler = torch.cuda.amp.GradScaler(enabled=amp is torch.float16)
    for t in range(args.steps):
        if cuda and t == args.warmup:
            torch.cuda.synchronize()
            started = time.perf_counter()
        t0 = time.perf_counter()
        if counter is not None:
            counter.update()
            count_s.append(time.perf_counter() - t0)
        x, y = data.train_batch(t)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=amp) if amp is not None else contextlib.nullcontext():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if client is not None:
            client.step(loss, correct=(logits.argmax(1) == y).sum(), samples=len(y))
        else:
            lr = base_lr * 0.5 * (1 + math.cos(math.pi * t / total))  # a cosine schedule, as the controller sends
            for g in opt.param_groups:
                g["lr"] = lr
        scaler.step(opt)
        scaler.update()
        stats = loss.detach(), (logits.argmax(1) == y).sum()
        if not cuda:  # the worker reads these too (on CUDA one step late, without waiting)
            stats[0].item(), int(stats[1])
            step_s.append(time.perf_counter() - t0)
    if cuda:  # a GPU runs ahead of the host: the steady-state time is the whole span over its steps
        torch.cuda.synchronize()
        step_s = [(time.perf_counter() - started) / (args.steps - args.warmup)] * (args.steps - args.warmup)
        args.warmup = 0
    if client is not None:
        client.close()
    quant_weights = sum(m.weight.numel() for _, m in layers)
    tracking = None
    if counter is not None and counter.prev is not None:
        tracking = sum(p.numel() * p.element_size() for p in counter.prev)
    print(json.dumps({
        "step_s": step_s[args.warmup:],
        "count_s": count_s[args.warmup:],
        "peak_rss": vm_hwm_bytes(),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "quantized_layers": len(layers),
        "quantized_weights": quant_weights,
        "tracking_bytes": tracking,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rank": ranks.rank,
        "world_size": ranks.world_size,
    }))


if __name__ == "__main__":
    main()
