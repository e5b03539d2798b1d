"""trqat worker: connects to the controller and trains on its commands (docs/protocol.md).

Usage: python -m trqat.worker [--endpoint E]  (default endpoint: $TRQAT_ENDPOINT)

Exit codes: 0 after shutdown, 1 a command failed, 2 rejected by the controller,
3 the controller stopped answering heartbeats, 4 the controller sent a bad message.
"""
import argparse
import math
import os
import platform
import secrets
import signal
import socket
import sys
import time
import traceback
from typing import Any, Dict, Iterable, Optional

import torch
import zmq

from . import __version__
from . import diagnostics, progress
from . import protocol as P
from .trainer import CHECKPOINT_FILE, Trainer, resolve_device
from .transport import POLL_MS, Heartbeat, Sender, dealer, device_name, env_int

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_CONTROLLER_GONE, EXIT_BAD_MESSAGE = 0, 1, 2, 3, 4
MAX_TEXT = 64 * 1024  # error texts are cut to this many characters to stay under the size limit


def log(text: str) -> None:
    print(f"trqat worker: {text}", file=sys.stderr, flush=True)


class BadMessage(Exception):
    """The controller sent something malformed or out of order (exit code 4)."""


class Exit(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class Worker:
    def __init__(self, endpoint: str, rank: int, world_size: int, heartbeat_ms: int, timeout_ms: int):
        self.endpoint, self.rank, self.world_size = endpoint, rank, world_size
        self.sender = Sender(secrets.token_hex(8))
        self.ctx = zmq.Context()
        self.sock = dealer(self.ctx, endpoint)
        self.heartbeat = Heartbeat(self.ctx, endpoint, self.sender, heartbeat_ms / 1000, timeout_ms / 1000,
                                   on_gone=_controller_gone)
        self.trainer: Optional[Trainer] = None

    # --- messaging -------------------------------------------------------------------------
    def send(self, type: str, body: Optional[Dict[str, Any]] = None) -> None:
        self.sock.send(self.sender.frame(type, body))

    def recv(self, expected: Iterable[str]) -> Dict[str, Any]:
        """Wait for the next controller message, which must be one of `expected`. No timeout of
        its own: the heartbeat thread ends the process when the controller is gone."""
        while not self.sock.poll(POLL_MS):
            if not self.heartbeat.is_alive():
                raise RuntimeError("the heartbeat thread stopped")
        try:
            msg = P.decode(self.sock.recv())
        except P.ProtocolError as e:
            raise BadMessage(str(e)) from None
        if msg["sid"] != self.sender.sid:
            raise BadMessage(f"message sid {msg['sid']!r} is not this worker's sid {self.sender.sid!r}")
        if msg["type"] == P.ERROR:
            log(f"controller reported an error: {msg['body']['message']}")
            raise Exit(EXIT_BAD_MESSAGE)
        expected = tuple(expected)
        if msg["type"] not in expected:
            raise BadMessage(f"unexpected {msg['type']!r} message while waiting for {' or '.join(expected)}")
        return msg

    # --- session ---------------------------------------------------------------------------
    def run(self) -> int:
        log(f"sid {self.sender.sid}, pid {os.getpid()}, connecting to {self.endpoint}")
        try:
            self.handshake()
            while True:
                cmd = self.recv((P.TRAIN, P.EVAL, P.SAVE, P.SHUTDOWN))
                if cmd["type"] == P.SHUTDOWN:
                    self.send(P.BYE)
                    return EXIT_OK
                self.execute(cmd)
        except Exit as e:
            return e.code
        except BadMessage as e:
            log(f"bad message from the controller: {e}")
            self.send(P.ERROR, {"message": str(e)})
            return EXIT_BAD_MESSAGE
        except Exception as e:
            tb = traceback.format_exc()
            log(f"failed:\n{tb}")
            message = f"{type(e).__name__}: {e}"[:MAX_TEXT]
            self.send(P.ERROR, {"message": message, "traceback": tb[-MAX_TEXT:]})
            return EXIT_FAILED
        finally:
            self.close()

    def close(self) -> None:
        self.heartbeat.stop.set()
        if self.heartbeat.is_alive():
            self.heartbeat.join()
        self.sock.close()  # lingers to deliver the last message
        self.ctx.term()

    def handshake(self) -> None:
        default = resolve_device("auto")
        self.send(P.HELLO, {
            "protocol": P.PROTOCOL_VERSION, "rank": self.rank, "world_size": self.world_size,
            "pid": os.getpid(), "hostname": socket.gethostname(), "device": str(default),
            "device_name": device_name(default), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "trqat_version": __version__,
        })
        self.heartbeat.start()
        progress.set_sink(lambda phase, done, total: self.send(P.PROGRESS, {"phase": phase, "done": done, "total": total}))
        msg = self.recv((P.WELCOME, P.REJECT))
        if msg["type"] == P.REJECT:
            log(f"rejected by the controller: {msg['body']['reason']}")
            raise Exit(EXIT_REJECTED)
        config, resume = msg["body"]["config"], msg["body"]["resume"]
        self.trainer = t = self.build(config)
        start = t.load(resume) if resume is not None else 0
        if resume is not None:
            log(f"resumed from {os.path.join(resume, CHECKPOINT_FILE)} at step {start}")
        self.send(P.READY, {
            "device": str(t.device), "layers": t.layer_info(), "params": t.param_counts(),
            "train_size": len(t.data.train), "test_size": len(t.data.test),
            "steps_per_epoch": t.data.steps_per_epoch, "start_step": start,
        })

    def build(self, config: Dict[str, Any]) -> Trainer:
        wcfg = config["worker"]
        device = resolve_device(wcfg.get("device", "auto"))
        if device.type == "cpu":  # some builds default to 1 thread
            torch.set_num_threads(wcfg.get("threads") or os.cpu_count() or 1)
        trainer = Trainer(config, device)
        q = config["quant"]
        log(f"device {device} ({device_name(device)}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
        log(f"model {config['model']['name']} W{q['weight_bits']}A{q['act_bits']} ({config['mode']}), "
            f"{len(trainer.layers)} quantized layers, {len(trainer.data.train)} train / "
            f"{len(trainer.data.test)} test samples")
        return trainer

    # --- commands --------------------------------------------------------------------------
    def execute(self, cmd: Dict[str, Any]) -> None:
        started = time.perf_counter()
        body = cmd["body"]
        if cmd["type"] == P.TRAIN:
            self.train(body["start"], body["end"], started)
        elif cmd["type"] == P.EVAL:
            result = self.trainer.evaluate()
            self.send(P.EVALUATED, {**result, "seconds": time.perf_counter() - started})
        else:
            path = self.trainer.save(body["path"])
            self.send(P.SAVED, {"path": body["path"], "bytes": os.path.getsize(path)})

    def check_lrs(self, lr: Dict[str, Any]) -> None:
        """lr_other: a finite number >= 0; lr_quant: the same, or a list of them with one entry per
        quantized layer (the order of ready.layers)."""
        for key in ("lr_quant", "lr_other"):
            values = lr[key] if isinstance(lr[key], list) else [lr[key]]
            for v in values:
                if not (math.isfinite(v) and v >= 0):
                    raise BadMessage(f"message field 'body.{key}' must hold finite numbers >= 0, got {v}")
        n = len(self.trainer.layers)
        if isinstance(lr["lr_quant"], list) and len(lr["lr_quant"]) != n:
            raise BadMessage(f"message field 'body.lr_quant' is a list of {len(lr['lr_quant'])} LRs but the "
                             f"model has {n} quantized layers (one LR per layer in ready.layers order)")

    def train(self, start: int, end: int, started: float) -> None:
        t = self.trainer
        if start != t.step or end < start:
            raise BadMessage(f"train {{start: {start}, end: {end}}} does not fit: the next step is {t.step}")
        stats: Dict[str, Any] = {"loss": None, "correct": None, "samples": None}
        step = start - 1
        layers, every = [m for _, m in t.layers], diagnostics.every_from(t.config)
        for step in range(start, end):
            counts = t.count_transitions()
            self.send(P.STEP, {"step": step, "counts": counts, **stats, **diagnostics.step_fields(layers, step, every)})
            t.forward_backward(step)
            lr = self.recv((P.LR,))["body"]
            if lr["step"] != step:
                raise BadMessage(f"lr for step {lr['step']} while step {step} is waiting")
            self.check_lrs(lr)
            t.set_lrs(lr["lr_quant"], lr["lr_other"])
            t.optimizer_step()
            # read one step late: the next count_transitions has synchronised with the device anyway
            stats = dict(zip(("loss", "correct", "samples"), t.last_stats()))
            if lr["stop"]:  # the controller ends the command early (Ctrl-C): this step was the last
                break
        self.send(P.TRAINED, {"end": max(start, step + 1), **stats, "seconds": time.perf_counter() - started})


def _controller_gone(reason: str) -> None:
    """Called by the heartbeat thread: a worker without a controller has nothing left to do."""
    log(f"{reason}; exiting")
    os._exit(EXIT_CONTROLLER_GONE)






def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trqat.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("TRQAT_ENDPOINT"),
                        help="controller ZeroMQ endpoint (default: $TRQAT_ENDPOINT)")
    args = parser.parse_args(argv)
    if not args.endpoint:
        log("no controller endpoint: set TRQAT_ENDPOINT or pass --endpoint")
        return EXIT_FAILED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller coordinates Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate at once, even inside a torch kernel
    worker = Worker(args.endpoint,
                    rank=env_int("TRQAT_RANK", "RANK", default=0),
                    world_size=env_int("TRQAT_WORLD_SIZE", "WORLD_SIZE", default=1),
                    heartbeat_ms=env_int("TRQAT_HEARTBEAT_MS", default=1000),
                    timeout_ms=env_int("TRQAT_CONTROLLER_TIMEOUT_MS", default=10000))
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
