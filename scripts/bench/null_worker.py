"""A worker that does no tensor work: the real trqat.worker.Worker (handshake, messaging, heartbeats,
validation on both sides) around a trainer that only makes up transition counts.

The bridge benchmark runs the real controller (train()) against it to measure the round trip of the
per-step exchange and the controller's throughput without any compute in the way.
Started through null-worker.sh as `worker.python`. Environment:
  TRQAT_BENCH_LAYERS  number of quantized layers to report (default 18)
  TRQAT_BENCH_OUT     where to write the measurements (JSON) at shutdown
Round trip = from just before the `step` message is encoded to just after the `lr` reply is decoded
and checked (Session.step + Session.lr), the same span bare_peer.py measures.
"""
import json
import os
import random
import sys
import time
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

from trqat import protocol as P
from trqat import worker as W


def layer_sizes(n: int) -> List[int]:
    """ResNet-20's 18 quantized conv layers, repeated/cut to n (sizes of 3x3 convs, 16..64 channels)."""
    r20 = [2304] * 6 + [4608] + [9216] * 5 + [18432] + [36864] * 5
    return [r20[i % len(r20)] * (1 + i // len(r20)) for i in range(n)]


class NullTrainer:
    def __init__(self, config: Dict[str, Any], n_layers: int):
        self.config = config
        self.device = SimpleNamespace(type="cpu")
        self.numels = layer_sizes(n_layers)
        self.layers = [(f"layer{i}", None) for i in range(n_layers)]  # Trainer.layers: (name, module)
        rng = random.Random(0)
        # realistic counts: around 0.1% of each layer's weights change level per step
        self.pool = [[rng.randint(0, max(1, n // 500)) for n in self.numels] for _ in range(64)]
        batch = config["data"]["batch_size"]
        self.data = SimpleNamespace(train=range(batch * 100), test=range(batch), steps_per_epoch=100)
        self.step = 0
        self._first = True
        self._pending: Optional[int] = None

    def layer_info(self):
        return [{"name": f"layer{i}", "kind": "conv", "numel": n, "weight_bits": 2, "act_bits": 2}
                for i, n in enumerate(self.numels)]

    def param_counts(self):
        return {"quantized": sum(self.numels), "other": 1000}

    def load(self, path: str) -> int:
        return self.step

    def counts(self):
        if self._first:
            self._first = False
            return None
        return self.pool[self.step % len(self.pool)]

    def begin_step(self):
        counts, last = self.counts(), self.take_stats()
        return SimpleNamespace(result=lambda: (counts, last))

    def forward_backward(self, step: int, after_forward=None) -> None:
        if after_forward is not None:
            after_forward()
        self._pending = step
        self._stats = True

    def set_lrs(self, lr_quant, lr_other) -> None:
        self.lrs = (lr_quant, lr_other)

    def optimizer_step(self) -> None:
        self.step, self._pending = self._pending + 1, None

    def take_stats(self):
        if not getattr(self, "_stats", False):
            return None
        self._stats = False
        return {"loss": 0.5, "correct": 60, "samples": self.config["data"]["batch_size"]}

    def evaluate(self):
        return {"top1": 10.0, "loss": 2.3, "samples": 1}

    def save(self, path_dir: str, step: Optional[int] = None, create: bool = True) -> str:
        if create:
            os.makedirs(path_dir, exist_ok=True)
        path = os.path.join(path_dir, "worker.pt")
        with open(path, "wb") as f:
            f.write(b"null worker")
        return path


class NullWorker(W.Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rtt_ns: List[int] = []
        self._t0: Optional[int] = None
        self.cpu0 = self.wall0 = None
        session = self.session
        step, lr = session.step, session.lr

        def timed_step(*a, **k):
            self._t0 = time.perf_counter_ns()
            if self.cpu0 is None:
                self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
            step(*a, **k)

        def timed_lr(*a, **k):
            msg = lr(*a, **k)
            self.rtt_ns.append(time.perf_counter_ns() - self._t0)
            self.cpu1, self.wall1 = time.process_time(), time.perf_counter()
            return msg

        session.step, session.lr = timed_step, timed_lr

    def build(self, config):
        return NullTrainer(config, int(os.environ.get("TRQAT_BENCH_LAYERS", "18")))

    def run(self):
        code = super().run()
        out = os.environ.get("TRQAT_BENCH_OUT")
        if out and self.rtt_ns:
            with open(out, "w") as f:
                json.dump({"rtt_ns": self.rtt_ns, "cpu_s": self.cpu1 - self.cpu0,
                           "wall_s": self.wall1 - self.wall0, "layers": len(self.trainer.numels)}, f)
        return code


if __name__ == "__main__":
    W.Worker = NullWorker  # main() builds a W.Worker
    sys.exit(W.main([]))
