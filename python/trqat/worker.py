"""trqat worker: one rank of a managed run (docs/protocol.md).

Usage: python -m trqat.worker [--endpoint E]

It finds its controller and the run's credentials in the environment (TRQAT_ENDPOINT and
TRQAT_SECRET from the controller that started it, or TRQAT_AUTH_FILE for ranks started by
torchrun, srun or any launcher), and its place in the job in the torch.distributed contract
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; SLURM_* as a fallback). It builds what
the config says, then trains step by step: it reports the transitions of the last update, runs
forward and backward, takes the controller's learning rates and follows its directives
(evaluate, save, stop).

Exit codes: 0 done, 1 failed, 2 rejected or a config that cannot work, 3 the controller is gone,
4 the controller sent a bad message or ended the run.
"""
import argparse
import hashlib
import json
import math
import os
import signal
import sys
import time
import traceback
from typing import Any, Dict, Optional

import torch

from . import diagnostics, distributed, progress, safe_io
from .allocator import tune_malloc
from . import protocol as P
from .distributed import Ranks, ranks_from_env
from .extras import MissingExtra
from .factories import FactoryError
from .log import logger, to_stderr
from .checkpoint import CHECKPOINT_FILE, CheckpointProblem
from .trainer import Trainer, resolve_device
from .transport import Credentials, Rejected, Session, TransportError, env_ms

EXIT_OK, EXIT_FAILED, EXIT_REJECTED, EXIT_CONTROLLER_GONE, EXIT_BAD_MESSAGE = 0, 1, 2, 3, 4
MAX_TEXT = 64 * 1024  # error texts are cut to this many characters to stay under the size limit
# Exceptions while building from the config are the config's fault (a missing dataset, an unknown
# optimizer): reported as config errors, without a traceback on the console.
CONFIG_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, FactoryError, MissingExtra)


class BadMessage(Exception):
    """The controller sent something that does not fit (exit code 4)."""


class ConfigProblem(Exception):
    """The config cannot work on this machine (exit code 2)."""


class Worker:
    def __init__(self, credentials: Credentials, ranks: Ranks):
        self.ranks = ranks
        self.session = Session(P.ROLE_WORKER, ranks, credentials,
                               heartbeat_s=credentials.heartbeat_s,
                               timeout_s=credentials.controller_timeout_s, on_gone=_controller_gone)
        self.trainer: Optional[Trainer] = None
        self.trace: Optional[Any] = None

    def run(self) -> int:
        logger.info("rank %d/%d, sid %s, pid %d, connecting to %s", self.ranks.rank, self.ranks.world_size,
                    self.session.sid, os.getpid(), self.session.credentials.endpoint)
        try:
            config, resume = self.session.hello(resolve_device("auto", self.ranks.local_rank))
            if self.ranks.rank == 0:  # long phases (loading data, evaluating) say how far they are
                progress.set_sink(lambda phase, done, total: self.session.send(P.PROGRESS, {"phase": phase, "done": done, "total": total}))
            try:
                trainer = self.trainer = self.build(config)
            except CONFIG_ERRORS as e:
                raise ConfigProblem(str(e)) from e
            if resume is not None:
                progress.phase("checkpoint")
            start = trainer.load(resume) if resume is not None else 0
            if resume is not None:
                logger.info("resumed from %s at step %d", os.path.join(resume, CHECKPOINT_FILE), start)
            # where start-up went (read from worker.log; README, "Start-up")
            logger.info("start-up: %s", ", ".join(f"{name} {seconds:.2f} s" for name, seconds in progress.phase_seconds().items()))
            plan = self.session.ready({
                "device": str(trainer.device), "layers": trainer.layer_info(), "params": trainer.param_counts(),
                "train_size": len(trainer.data.train), "test_size": len(trainer.data.test),
                "steps_per_epoch": trainer.data.steps_per_epoch, "start_step": start,
            })
            if plan["start_step"] != start:
                raise BadMessage(f"the plan starts at step {plan['start_step']}, the worker at step {start}")
            self.train(plan["total_steps"])
            if trainer.device.type == "cuda":  # read from worker.log by scripts/bench/gpu.mjs
                logger.info("peak GPU memory: %d bytes", torch.cuda.max_memory_allocated(trainer.device))
            self.session.bye(trainer.take_stats())
            return EXIT_OK
        except Rejected as e:
            logger.info("rejected by the controller: %s", e.reason)
            return EXIT_REJECTED
        except ConfigProblem as e:
            logger.info("the config cannot work here: %s\n%s", e, traceback.format_exc())
            self.session.send(P.ERROR, {"message": str(e)[:MAX_TEXT], "kind": "config"})
            return EXIT_REJECTED
        except CheckpointProblem as e:  # said without a traceback: the controller tries an earlier checkpoint
            logger.info("cannot resume from %s: %s", resume, e)
            self.session.send(P.ERROR, {"message": str(e)[:MAX_TEXT], "kind": "checkpoint"})
            return EXIT_FAILED
        except safe_io.WriteError as e:  # a full disk: the file and the cause say it all, no traceback
            logger.info("failed: %s", e)
            self.session.send(P.ERROR, {"message": str(e)[:MAX_TEXT]})
            return EXIT_FAILED
        except (TransportError, BadMessage) as e:
            logger.info("%s", e)
            if isinstance(e, BadMessage):
                self.session.send(P.ERROR, {"message": str(e)[:MAX_TEXT]})
            return EXIT_BAD_MESSAGE
        except Exception as e:
            tb = traceback.format_exc()
            logger.info("failed:\n%s", tb)
            self.session.send(P.ERROR, {"message": f"{type(e).__name__}: {e}"[:MAX_TEXT], "traceback": tb[-MAX_TEXT:]})
            return EXIT_FAILED
        finally:
            self.session.close()
            if self.trace is not None:
                self.trace.close()
            distributed.shutdown()

    def build(self, config: Dict[str, Any]) -> Trainer:
        wcfg = config["worker"]
        device = resolve_device(wcfg["device"], self.ranks.local_rank)
        if device.type == "cpu":  # some builds default to 1 thread; ranks on one machine share its cores
            # worker.threads null: only this machine knows its cores (the controller may run elsewhere)
            torch.set_num_threads(wcfg["threads"] or max(1, (os.cpu_count() or 1) // self.ranks.world_size))
        if self.ranks.world_size > 1:
            progress.phase("ranks")
        distributed.init(self.ranks, device, wcfg["backend"])
        trainer = Trainer(config, device, self.ranks)
        q = config["quant"]
        logger.info("device %s, torch %s, %d threads; model %s W%sA%s (%s), %d quantized layers, %d train / %d test samples",
                    device, torch.__version__, torch.get_num_threads(), config["model"]["name"], q["weight_bits"],
                    q["act_bits"], config["mode"], len(trainer.layers), len(trainer.data.train), len(trainer.data.test))
        if wcfg["trace"] and os.environ.get("TRQAT_RUN_DIR"):
            folder = os.path.join(os.environ["TRQAT_RUN_DIR"], "ranks")
            os.makedirs(folder, exist_ok=True)
            self.trace = open(os.path.join(folder, f"rank-{self.ranks.rank}.jsonl"), "a")
        return trainer

    def train(self, total: int) -> None:
        t, s = self.trainer, self.session
        assert t is not None
        rank0 = self.ranks.rank == 0
        layers, every = [m for _, m in t.layers], diagnostics.every_from(t.config)
        while t.step < total:
            step = t.step
            report = t.begin_step()
            extra = diagnostics.step_fields(layers, step, every) if rank0 else None
            # the report goes out after the forward pass: on CUDA the counts' copy has landed while it
            # was queued, and the controller decides while backward runs
            t.forward_backward(step, after_forward=lambda: s.step(step, *report.result(), extra))
            counts = report.result()[0]
            lr = s.lr(step)
            self.check_lrs(lr)
            t.set_lrs(lr["lr_quant"], lr["lr_other"])
            t.optimizer_step()
            self.record(step, counts, lr)
            if lr["eval"]:
                started = time.perf_counter()
                result = t.evaluate()
                self.record(step, None, None, evaluated=result)
                if rank0:
                    s.send(P.EVALUATED, {**result, "seconds": time.perf_counter() - started, "last": t.take_stats()})
            if lr["save"] is not None:
                path = t.save(lr["save"], create=False)  # the controller made the folder; gone means abandoned
                if path is not None:
                    s.send(P.SAVED, {"path": lr["save"], "bytes": os.path.getsize(path), "last": t.take_stats()})
            if lr["stop"]:
                break

    def check_lrs(self, lr: Dict[str, Any]) -> None:
        """lr_other: a finite number >= 0; lr_quant: the same, or a list of them with one entry per
        quantized layer (the order of ready.layers)."""
        for key in ("lr_quant", "lr_other"):
            values = lr[key] if isinstance(lr[key], list) else [lr[key]]
            for v in values:
                if not (math.isfinite(v) and v >= 0):
                    raise BadMessage(f"message field 'body.{key}' must hold finite numbers >= 0, got {v}")
        n = len(self.trainer.layers) if self.trainer else 0
        if isinstance(lr["lr_quant"], list) and len(lr["lr_quant"]) != n:
            raise BadMessage(f"message field 'body.lr_quant' is a list of {len(lr['lr_quant'])} LRs but the "
                             f"model has {n} quantized layers (one LR per layer in ready.layers order)")

    def record(self, step: int, counts: Optional[list], lr: Optional[Dict[str, Any]], evaluated: Optional[Dict[str, Any]] = None) -> None:
        """worker.trace: this rank's own record of what it measured and applied, one JSON line per event."""
        if self.trace is None:
            return
        line: Dict[str, Any] = {"step": step}
        if lr is not None:
            line.update(counts=counts, lr_quant=lr["lr_quant"], lr_other=lr["lr_other"])
        if evaluated is not None:
            line.update(evaluated=evaluated, state_sha256=state_digest(self.trainer.model))  # type: ignore[union-attr]
        try:
            self.trace.write(json.dumps(line) + "\n")
            self.trace.flush()
        except OSError as e:
            raise safe_io.WriteError(self.trace.name, e) from None


def state_digest(model: torch.nn.Module) -> str:
    """A fingerprint of every parameter and buffer: equal on every rank when the ranks agree."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _controller_gone(reason: str) -> None:
    """Called by the heartbeat thread: a worker without a controller has nothing left to do."""
    logger.info("%s; exiting", reason)
    os._exit(EXIT_CONTROLLER_GONE)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trqat.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=None, help="controller ZeroMQ endpoint (default: $TRQAT_ENDPOINT or the auth file's)")
    args = parser.parse_args(argv)
    try:
        ranks = ranks_from_env()
        to_stderr(f"trqat worker {ranks.rank}" if ranks.world_size > 1 else "trqat worker")
        credentials = Credentials.from_env(args.endpoint)
    except (TransportError, ValueError) as e:
        print(f"trqat worker: {e}", file=sys.stderr)
        return EXIT_FAILED
    tune_malloc()  # a step's memory is kept for the next instead of faulted in again (trqat/allocator.py)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller coordinates Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate at once, even inside a torch kernel
    return Worker(credentials, ranks).run()


if __name__ == "__main__":
    sys.exit(main())
