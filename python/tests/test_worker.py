"""The worker as a subprocess against a small fake controller (a ROUTER socket in the test)."""
import os
import subprocess
import sys
import time

import pytest
import zmq

from conftest import make_config
from trqat import protocol as P

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..")


class FakeController:
    def __init__(self, ack_heartbeats=True):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.ack_heartbeats, self.heartbeats = ack_heartbeats, 0
        self.progress = []  # the bodies of `progress` messages, which answer nothing
        self.sid, self.ident, self.seq, self.proc = None, None, 0, None

    def start(self, timeout_ms=10000, **extra_env):
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR, TRQAT_HEARTBEAT_MS="100",
                   TRQAT_CONTROLLER_TIMEOUT_MS=str(timeout_ms), **extra_env)
        self.proc = subprocess.Popen([sys.executable, "-m", "trqat.worker", "--endpoint", self.endpoint],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return self

    def recv(self, expect=None, timeout=30.0):
        """Next non-heartbeat message from the worker (heartbeats are acked on their routing id)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sock.poll(100):
                continue
            ident, frame = self.sock.recv_multipart()
            msg = P.decode(frame)
            if msg["type"] == P.HEARTBEAT:
                self.heartbeats += 1
                if self.ack_heartbeats:
                    self.sock.send_multipart([ident, P.encode(P.HEARTBEAT_ACK, msg["sid"], self._next())])
                continue
            if msg["type"] == P.PROGRESS:
                self.progress.append(msg["body"])
                continue
            if msg["type"] == P.HELLO:
                self.sid, self.ident = msg["sid"], ident
            assert msg["sid"] == self.sid
            if expect is not None:
                assert msg["type"] == expect, msg
            return msg
        raise AssertionError(f"no message within {timeout} s (waiting for {expect})")

    def send(self, type, body=None):
        self.sock.send_multipart([self.ident, P.encode(type, self.sid, self._next(), body)])

    def send_raw(self, frame):
        self.sock.send_multipart([self.ident, frame])

    def _next(self):
        self.seq += 1
        return self.seq - 1

    def wait(self, timeout=30.0):
        """Exit code and stderr of the worker, serving heartbeats meanwhile."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                self.recv(timeout=0.1)
            except AssertionError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.returncode, self.proc.stderr.read()

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.proc.stderr.close()
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def controller():
    ctrl = FakeController()
    yield ctrl
    ctrl.close()


def handshake(ctrl, config, resume=None):
    hello = ctrl.start().recv(P.HELLO)
    ctrl.send(P.WELCOME, {"config": config, "resume": resume})
    return hello, ctrl.recv(P.READY)


def train(ctrl, start, end, lr=0.05):
    ctrl.send(P.TRAIN, {"start": start, "end": end})
    steps = []
    for t in range(start, end):
        steps.append(ctrl.recv(P.STEP)["body"])
        assert steps[-1]["step"] == t
        ctrl.send(P.LR, {"step": t, "lr_quant": lr, "lr_other": lr, "stop": False})
    return steps, ctrl.recv(P.TRAINED)["body"]


def test_stop_flag_ends_the_train_command_early(controller):
    handshake(controller, make_config())
    controller.send(P.TRAIN, {"start": 0, "end": 4})
    for t in range(2):
        assert controller.recv(P.STEP)["body"]["step"] == t
        controller.send(P.LR, {"step": t, "lr_quant": 0.05, "lr_other": 0.05, "stop": t == 1})
    trained = controller.recv(P.TRAINED)["body"]
    assert trained["end"] == 2 and trained["samples"] == 16
    controller.send(P.TRAIN, {"start": 2, "end": 3})
    assert controller.recv(P.STEP)["body"]["step"] == 2
    controller.send(P.LR, {"step": 2, "lr_quant": 0.05, "lr_other": 0.05, "stop": False})
    assert controller.recv(P.TRAINED)["body"]["end"] == 3
    controller.send(P.SHUTDOWN)
    controller.recv(P.BYE)
    assert controller.wait()[0] == 0


def test_full_session_then_resume(controller, tmp_path):
    hello, ready = handshake(controller, make_config())
    assert hello["body"]["protocol"] == 1 and hello["body"]["pid"] == controller.proc.pid
    assert hello["body"]["device"] == "cpu" and hello["body"]["trqat_version"] == "0.1.0"
    body = ready["body"]
    assert body["device"] == "cpu" and body["start_step"] == 0 and body["steps_per_epoch"] == 4
    assert body["train_size"] == 64 and body["test_size"] == 48 and len(body["layers"]) == 18
    assert body["layers"][0] == {"name": "layers.0.conv1", "kind": "conv", "numel": 2304, "weight_bits": 2, "act_bits": 2}
    assert body["params"]["quantized"] == sum(layer["numel"] for layer in body["layers"])

    steps, trained = train(controller, 0, 3)
    assert steps[0] == {"step": 0, "counts": None, "loss": None, "correct": None, "samples": None}
    for s in steps[1:]:
        assert len(s["counts"]) == 18 and all(isinstance(c, int) for c in s["counts"])
        assert s["loss"] > 0 and s["samples"] == 16 and 0 <= s["correct"] <= 16
    assert trained["end"] == 3 and trained["samples"] == 16 and trained["seconds"] > 0

    controller.send(P.EVAL)
    evaluated = controller.recv(P.EVALUATED)["body"]
    assert evaluated["samples"] == 48 and 0 <= evaluated["top1"] <= 100

    path = str(tmp_path / "ckpt")
    controller.send(P.SAVE, {"path": path})
    saved = controller.recv(P.SAVED)["body"]
    assert saved == {"path": path, "bytes": os.path.getsize(os.path.join(path, "worker.pt"))}

    controller.send(P.SHUTDOWN)
    controller.recv(P.BYE)
    code, err = controller.wait()
    assert code == 0, err
    assert controller.heartbeats > 0 and "quantized layers" in err

    resumed = FakeController()
    try:
        _, ready = handshake(resumed, make_config(), resume=path)
        assert ready["body"]["start_step"] == 3
        steps, _ = train(resumed, 3, 4)
        assert len(steps[0]["counts"]) == 18 and steps[0]["loss"] is None  # levels came with the checkpoint
        resumed.send(P.SHUTDOWN)
        resumed.recv(P.BYE)
        assert resumed.wait()[0] == 0
    finally:
        resumed.close()


def test_distance_diagnostics_and_eval_progress(controller):
    _, ready = handshake(controller, make_config(**{"train.diagnostics_every": 2}))
    numels = [layer["numel"] for layer in ready["body"]["layers"]]
    steps, _ = train(controller, 0, 5)
    assert ["dist" in s for s in steps] == [True, False, True, False, True]  # every 2 steps from step 0
    for s in steps[::2]:
        assert [sum(row) for row in s["dist"]["hist"]] == numels  # every weight in one bin
        assert all(len(row) == 11 for row in s["dist"]["hist"]) and len(s["dist"]["mean"]) == len(numels)
    assert steps[0]["dist"] != steps[4]["dist"]  # the weights moved
    controller.send(P.EVAL)
    controller.recv(P.EVALUATED)
    # The first batch and the end are always reported (throttled in between).
    assert controller.progress[0] == {"phase": "eval", "done": 32, "total": 48}
    assert controller.progress[-1] == {"phase": "eval", "done": 48, "total": 48}
    controller.send(P.SHUTDOWN)
    controller.recv(P.BYE)
    assert controller.wait()[0] == 0


def test_reject_exits_2_with_reason(controller):
    controller.start().recv(P.HELLO)
    controller.send(P.REJECT, {"reason": "protocol 1 is not 7"})
    code, err = controller.wait()
    assert code == 2 and "protocol 1 is not 7" in err


def test_silent_controller_makes_the_worker_exit_3():
    ctrl = FakeController(ack_heartbeats=False)
    try:
        ctrl.start(timeout_ms=800).recv(P.HELLO)
        started = time.monotonic()
        code, err = ctrl.wait(timeout=20)
        assert code == 3, err
        assert time.monotonic() - started < 5
        assert f"the trqat controller at {ctrl.endpoint} stopped answering for 0.8 s; exiting" in err
    finally:
        ctrl.close()


def test_malformed_frame_is_answered_and_exits_4(controller):
    controller.start().recv(P.HELLO)
    controller.send_raw(b"\xc1 not msgpack")
    error = controller.recv(P.ERROR)["body"]
    assert "not valid MessagePack" in error["message"]
    code, err = controller.wait()
    assert code == 4 and "not valid MessagePack" in err


def test_wrong_lr_step_is_a_bad_message(controller):
    handshake(controller, make_config())
    controller.send(P.TRAIN, {"start": 0, "end": 2})
    controller.recv(P.STEP)
    controller.send(P.LR, {"step": 5, "lr_quant": 0.1, "lr_other": 0.1, "stop": False})
    assert "lr for step 5 while step 0 is waiting" in controller.recv(P.ERROR)["body"]["message"]
    assert controller.wait()[0] == 4


def test_failing_build_sends_traceback_and_exits_1(controller):
    controller.start().recv(P.HELLO)
    controller.send(P.WELCOME, {"config": make_config(**{"model.name": "vgg99"}), "resume": None})
    error = controller.recv(P.ERROR)["body"]
    assert "unknown model.name 'vgg99'" in error["message"] and "Traceback" in error["traceback"]
    assert controller.wait()[0] == 1


def test_sigint_is_ignored_and_sigterm_exits(controller):
    handshake(controller, make_config())
    controller.proc.send_signal(2)  # SIGINT
    controller.send(P.EVAL)
    controller.recv(P.EVALUATED)
    controller.proc.terminate()
    code, _ = controller.wait(timeout=10)
    assert code == -15


def test_per_layer_lr_lists_and_their_length_check(controller):
    _, ready = handshake(controller, make_config(**{"tr.scope": "layer"}))
    n = len(ready["body"]["layers"])
    controller.send(P.TRAIN, {"start": 0, "end": 2})
    assert controller.recv(P.STEP)["body"]["step"] == 0
    controller.send(P.LR, {"step": 0, "lr_quant": [0.01 * i for i in range(n)], "lr_other": 0.05, "stop": False})
    assert controller.recv(P.STEP)["body"]["step"] == 1
    controller.send(P.LR, {"step": 1, "lr_quant": [0.1, 0.2], "lr_other": 0.05, "stop": False})
    message = controller.recv(P.ERROR)["body"]["message"]
    assert f"'body.lr_quant' is a list of 2 LRs but the model has {n} quantized layers" in message
    assert controller.wait()[0] == 4


def test_full_precision_model_reports_no_layers(controller):
    _, ready = handshake(controller, make_config(**{"mode": "baseline", "quant.weight_bits": 32, "quant.act_bits": 32}))
    assert ready["body"]["layers"] == [] and ready["body"]["params"]["quantized"] == 0
    controller.send(P.TRAIN, {"start": 0, "end": 2})
    counts = []
    for t in range(2):
        counts.append(controller.recv(P.STEP)["body"]["counts"])
        controller.send(P.LR, {"step": t, "lr_quant": [] if t else 0.1, "lr_other": 0.05, "stop": False})
    assert counts == [None, []] and controller.recv(P.TRAINED)["body"]["end"] == 2
    controller.send(P.SHUTDOWN)
    controller.recv(P.BYE)
    assert controller.wait()[0] == 0
