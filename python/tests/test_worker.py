"""The worker as a subprocess against the fake controller (fake_controller.py), scripted step by step."""
import os
import time

import pytest

from conftest import make_config
from trqat import protocol as P

SECRET = "s3cret"


def lr_body(step, lr=0.05, stop=False, eval=False, save=None, lr_quant=None):
    """An lr message as the controller sends it (the schedule's numbers are not the worker's concern)."""
    return {"step": step, "lr_quant": lr if lr_quant is None else lr_quant, "lr_other": lr, "stop": stop,
            "eval": eval, "save": save, "state": {"K": 0.0, "U": lr, "last_step": step},
            "k": None, "K": 0.0, "R": 1e-3, "U": lr}


@pytest.fixture
def controller(fake_controller):
    return fake_controller(secret=SECRET)


def handshake(ctrl, config, resume=None, total=100):
    hello = ctrl.start_worker().recv(P.HELLO)
    ctrl.send(P.WELCOME, {"config": config, "resume": resume})
    ready = ctrl.recv(P.READY)
    body = ready["body"]
    ctrl.send(P.PLAN, {"total_steps": total, "steps_per_epoch": body["steps_per_epoch"], "start_step": body["start_step"]})
    return hello, ready


def run_steps(ctrl, start, end, lr=0.05, **last_directives):
    """Steps start..end-1; the directives go with the LRs of the last one."""
    steps = []
    for t in range(start, end):
        steps.append(ctrl.recv(P.STEP)["body"])
        assert steps[-1]["step"] == t
        ctrl.send(P.LR, lr_body(t, lr, **(last_directives if t == end - 1 else {})))
    return steps


def test_full_session_with_directives_then_resume(controller, fake_controller, tmp_path):
    hello, ready = handshake(controller, make_config())
    h = hello["body"]
    assert h["protocol"] == 2 and h["role"] == "worker" and h["secret"] == SECRET
    # the worker's own pid: under a fork server (trqat/forkserver.py) the process started is its stand-in
    assert (h["pid"] != controller.proc.pid) if os.environ.get("TRQAT_FORKSERVER") else (h["pid"] == controller.proc.pid)
    assert h["rank"] == 0 and h["world_size"] == 1 and h["device"] == "cpu" and h["trqat_version"] == "0.1.0"
    body = ready["body"]
    assert body["device"] == "cpu" and body["start_step"] == 0 and body["steps_per_epoch"] == 4
    assert body["train_size"] == 64 and body["test_size"] == 48 and len(body["layers"]) == 18
    assert body["layers"][0] == {"name": "layers.0.conv1", "kind": "conv", "numel": 2304, "weight_bits": 2, "act_bits": 2}
    assert body["params"]["quantized"] == sum(layer["numel"] for layer in body["layers"])

    path = str(tmp_path / "ckpt")
    os.makedirs(path)  # the controller makes the staging folder
    steps = run_steps(controller, 0, 3, eval=True, save=path)
    assert steps[0] == {"step": 0, "counts": None, "last": None}
    for s in steps[1:]:
        assert len(s["counts"]) == 18 and all(isinstance(c, int) for c in s["counts"])
        assert s["last"]["loss"] > 0 and s["last"]["samples"] == 16 and 0 <= s["last"]["correct"] <= 16
    evaluated = controller.recv(P.EVALUATED)["body"]
    assert evaluated["samples"] == 48 and 0 <= evaluated["top1"] <= 100 and evaluated["seconds"] > 0
    assert evaluated["last"]["samples"] == 16  # the stats of step 2 travel with the first message after it
    saved = controller.recv(P.SAVED)["body"]
    assert saved == {"path": path, "bytes": os.path.getsize(os.path.join(path, "worker.pt")), "last": None}
    steps = run_steps(controller, 3, 4, stop=True)
    assert steps[0]["last"] is None  # already reported
    bye = controller.recv(P.BYE)["body"]
    assert bye["last"]["samples"] == 16
    controller.send(P.BYE, {})
    code, err = controller.wait_worker()
    assert code == 0, err
    assert controller.heartbeats > 0 and "quantized layers" in err

    resumed = fake_controller(secret=SECRET)
    _, ready = handshake(resumed, make_config(), resume=path)
    assert ready["body"]["start_step"] == 3
    steps = run_steps(resumed, 3, 4, stop=True)
    assert len(steps[0]["counts"]) == 18 and steps[0]["last"] is None  # levels came with the checkpoint
    resumed.recv(P.BYE)
    resumed.send(P.BYE, {})
    assert resumed.wait_worker()[0] == 0


def test_reject_exits_2_with_reason(controller):
    controller.start_worker().recv(P.HELLO)
    controller.send(P.REJECT, {"reason": "protocol 1 is not 7"})
    code, err = controller.wait_worker()
    assert code == 2 and "protocol 1 is not 7" in err


def test_silent_controller_makes_the_worker_exit_3(fake_controller):
    ctrl = fake_controller(secret=SECRET, ack_heartbeats=False)
    ctrl.start_worker(timeout_ms=800).recv(P.HELLO)
    ctrl.send(P.WELCOME, {"config": make_config(), "resume": None})
    started = time.monotonic()
    code, err = ctrl.wait_worker(timeout=20)
    assert code == 3, err
    assert time.monotonic() - started < 5
    assert f"the trqat controller at {ctrl.endpoint} stopped answering for 0.8 s; exiting" in err


def test_abort_on_the_heartbeat_socket_ends_the_worker_at_once(controller):
    handshake(controller, make_config())
    controller.recv(P.STEP)  # the worker now waits for its LRs
    controller.send(P.ABORT, {"reason": "rank 1 was killed"}, ident=controller.beat_ident)
    started = time.monotonic()
    code, err = controller.wait_worker(timeout=10)
    assert code == 3 and time.monotonic() - started < 2
    assert "the trqat controller ended the run: rank 1 was killed" in err


def test_malformed_frame_is_answered_and_exits_4(controller):
    handshake(controller, make_config())
    controller.recv(P.STEP)
    controller.send_raw(b"\xc1 not msgpack")
    code, err = controller.wait_worker()
    assert code == 4 and "not valid MessagePack" in err


def test_wrong_lr_step_is_a_bad_message(controller):
    handshake(controller, make_config())
    controller.recv(P.STEP)
    controller.send(P.LR, lr_body(5))
    code, err = controller.wait_worker()
    assert code == 4 and "the controller sent the LRs of step 5 while step 0 waits" in err


def test_a_config_that_cannot_work_is_a_config_error_without_traceback(controller):
    controller.start_worker().recv(P.HELLO)
    controller.send(P.WELCOME, {"config": make_config(**{"model.name": "vgg99"}), "resume": None})
    error = controller.recv(P.ERROR)["body"]
    assert error["kind"] == "config" and "unknown model.name 'vgg99'" in error["message"] and "traceback" not in error
    code, err = controller.wait_worker()
    assert code == 2 and "Traceback" in err  # the details stay in the worker's log


def test_a_failure_while_training_sends_the_traceback_and_exits_1(controller, tmp_path):
    # A readable checkpoint of another model: restoring it fails like any error of the run.
    from trqat.trainer import Trainer
    import torch
    Trainer(make_config(), torch.device("cpu")).save(str(tmp_path))
    controller.start_worker().recv(P.HELLO)
    five = make_config(**{"model.num_classes": 5, "data.synthetic.num_classes": 5})
    controller.send(P.WELCOME, {"config": five, "resume": str(tmp_path)})
    error = controller.recv(P.ERROR)["body"]
    assert "does not match this run" in error["message"] and "Traceback" in error["traceback"]
    assert controller.wait_worker()[0] == 1


def test_an_unreadable_checkpoint_is_a_checkpoint_error_without_traceback(controller, tmp_path):
    # The controller falls back to an earlier checkpoint on kind "checkpoint" (test/e2e/resume-checks.test.ts).
    (tmp_path / "worker.pt").write_bytes(b"not a checkpoint")
    controller.start_worker().recv(P.HELLO)
    controller.send(P.WELCOME, {"config": make_config(), "resume": str(tmp_path)})
    error = controller.recv(P.ERROR)["body"]
    assert error["kind"] == "checkpoint" and "worker.pt is unreadable or corrupt" in error["message"] and "traceback" not in error
    assert controller.wait_worker()[0] == 1


def test_sigint_is_ignored_and_sigterm_exits(controller):
    handshake(controller, make_config())
    controller.recv(P.STEP)
    controller.proc.send_signal(2)  # SIGINT
    controller.send(P.LR, lr_body(0))
    controller.recv(P.STEP)
    controller.proc.terminate()
    code, _ = controller.wait_worker(timeout=10)
    assert code == -15


def test_per_layer_lr_lists_and_their_length_check(controller):
    _, ready = handshake(controller, make_config(**{"tr.scope": "layer"}))
    n = len(ready["body"]["layers"])
    assert controller.recv(P.STEP)["body"]["step"] == 0
    controller.send(P.LR, lr_body(0, lr_quant=[0.01 * i for i in range(n)]))
    assert controller.recv(P.STEP)["body"]["step"] == 1
    controller.send(P.LR, lr_body(1, lr_quant=[0.1, 0.2]))
    message = controller.recv(P.ERROR)["body"]["message"]
    assert f"'body.lr_quant' is a list of 2 LRs but the model has {n} quantized layers" in message
    assert controller.wait_worker()[0] == 4


def test_full_precision_model_reports_no_layers(controller):
    _, ready = handshake(controller, make_config(**{"mode": "baseline", "quant.weight_bits": 32, "quant.act_bits": 32}))
    assert ready["body"]["layers"] == [] and ready["body"]["params"]["quantized"] == 0
    counts = [s["counts"] for s in run_steps(controller, 0, 2, stop=True)]
    assert counts == [None, []]
    controller.recv(P.BYE)
    controller.send(P.BYE, {})
    assert controller.wait_worker()[0] == 0


def test_distance_diagnostics_and_eval_progress(controller):
    _, ready = handshake(controller, make_config(**{"train.diagnostics_every": 2}))
    numels = [layer["numel"] for layer in ready["body"]["layers"]]
    steps = run_steps(controller, 0, 5, eval=True, stop=True)
    assert ["dist" in s for s in steps] == [True, False, True, False, True]  # every 2 steps from step 0
    for s in steps[::2]:
        assert [sum(row) for row in s["dist"]["hist"]] == numels  # every weight in one bin
        assert all(len(row) == 11 for row in s["dist"]["hist"]) and len(s["dist"]["mean"]) == len(numels)
    assert steps[0]["dist"] != steps[4]["dist"]  # the weights moved
    controller.recv(P.EVALUATED)
    # Start-up announces its phases; the evaluation's first batch and end are always reported (throttled in between).
    assert [p["phase"] for p in controller.progress[:2]] == ["data", "model"]
    assert controller.progress[2] == {"phase": "eval", "done": 32, "total": 48}
    assert controller.progress[-1] == {"phase": "eval", "done": 48, "total": 48}
    controller.recv(P.BYE)
    controller.send(P.BYE, {})
    assert controller.wait_worker()[0] == 0
