"""Counting time against the number of quantized layers at a fixed number of quantized weights.

Builds stacks of L quantized Linear layers (trqat.quantize, W2A2, none left full
precision) holding about W weights in all, and times TransitionCounter.update() (the worker's
per-step counting) after a small random update of all weights, as in training.

Usage: python count_layers.py --weights W --layers 4,16,64 --reps N [--threads T]
Prints one JSON line: [{layers, weights, median_s, p10_s, p90_s}, ...]
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn

from trqat.adapt import quantize
from trqat.quant import quantized_layers
from trqat.transitions import TransitionCounter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=int, default=1_000_000)
    ap.add_argument("--layers", default="4,16,64,256")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = []
    for n_layers in [int(v) for v in args.layers.split(",")]:
        d = max(2, round(math.sqrt(args.weights / n_layers)))
        model = quantize(nn.Sequential(*[nn.Linear(d, d, bias=False) for _ in range(n_layers)]),
                         2, 2, keep_first_last=False)
        layers = [m for _, m in quantized_layers(model)]
        counter = TransitionCounter(layers)
        counter.update()
        times = []
        for _ in range(args.reps):
            with torch.no_grad():
                for m in layers:
                    m.weight.add_(torch.randn_like(m.weight), alpha=1e-3 * float(m.weight.abs().mean()))
            t0 = time.perf_counter()
            counter.update()
            times.append(time.perf_counter() - t0)
        times.sort()
        q = lambda p: times[min(len(times) - 1, int(p * (len(times) - 1) + 0.5))]
        out.append({"layers": n_layers, "weights": sum(m.weight.numel() for m in layers),
                    "median_s": q(0.5), "p10_s": q(0.1), "p90_s": q(0.9)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
