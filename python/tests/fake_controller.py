"""The controller's side of the protocol for the Python tests: one ROUTER socket on a random loopback
port, speaking docs/protocol.md with trqat.protocol's own encode/decode (every frame it sends is
validated as the controller's, every message it reads as a session's).

One class, three ways to drive it:
- scripted, step by step (the managed worker): `recv(expect)` returns the next session message and
  answers attach/heartbeat on the way; `send(type, body)` answers; `start_worker()` / `wait_worker()`
  run `python -m trqat.worker` against it;
- auto-replying (the plug-in client): `serve(...)` answers in a thread like `trqat serve` does
  (welcome or reject, plan, lr per step, bye), with faults on request (a frozen or aborting
  controller, another protocol version); `of(type)` lists what the sessions sent;
- raw frames (fuzzing the receive paths): `identity()`, `send_raw()`, `recv_frame()`, `drain()`.

The real TypeScript controller is tested against the sessions end to end in test/ (vitest).
"""
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import msgpack
import zmq

from trqat import forkserver
from trqat import protocol as P

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..")
NO_MESSAGE = "no message within"  # what recv() raises on a timeout


class FakeController:
    """A ROUTER socket speaking the controller's side of the protocol.

    - secret: when set, every hello and attach must carry it (asserted; in serve() mode the failure
      is raised by close()).
    - ack_heartbeats: False for a silent controller (the session's heartbeat times out).
    - version: the protocol version stamped on what it sends (another one to test the refusal).
    """

    def __init__(self, *, secret: Optional[str] = None, ack_heartbeats: bool = True, version: int = P.PROTOCOL_VERSION):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.secret, self.ack_heartbeats, self.version = secret, ack_heartbeats, version
        self.sid: Optional[str] = None  # the session of the last hello, and its routing ids
        self.ident: Optional[bytes] = None
        self.beat_ident: Optional[bytes] = None
        self.heartbeats = 0
        self.received: List[Dict[str, Any]] = []  # every session message but attach, heartbeat, progress
        self.progress: List[Dict[str, Any]] = []  # the bodies of `progress` messages, which answer nothing
        self.proc: Optional[subprocess.Popen] = None
        self._seq = 0
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None

    # --- raw frames --------------------------------------------------------------------------
    def recv_frame(self, timeout: float = 5.0) -> Optional[Tuple[bytes, bytes]]:
        """The next (routing id, frame), or None after `timeout` seconds."""
        if not self.sock.poll(round(timeout * 1000)):
            return None
        ident, frame = self.sock.recv_multipart()
        return ident, frame

    def identity(self, timeout: float = 5.0) -> bytes:
        """The routing id of the next frame (a DEALER that has sent anything)."""
        got = self.recv_frame(timeout)
        assert got is not None, "the session sent nothing"
        return got[0]

    def send_raw(self, frame: bytes, ident: Optional[bytes] = None) -> None:
        self.sock.send_multipart([ident or self.ident, frame])

    def drain(self) -> None:
        """Drop every frame already received."""
        while self.sock.poll(0):
            self.sock.recv_multipart()

    # --- messages ----------------------------------------------------------------------------
    def frame(self, type: str, sid: Optional[str], body: Optional[Dict[str, Any]] = None) -> bytes:
        """One controller message, validated and numbered; stamped with `version` if that is not ours."""
        frame = P.encode(type, sid or "", self._seq, body, sender="controller")
        self._seq += 1
        if self.version != P.PROTOCOL_VERSION:
            frame = msgpack.packb({**msgpack.unpackb(frame, raw=False), "v": self.version}, use_bin_type=True)
        return frame

    def send(self, type: str, body: Optional[Dict[str, Any]] = None, ident: Optional[bytes] = None,
             sid: Optional[str] = None) -> None:
        """To the last hello's session (its main socket, or `ident`: beat_ident is its heartbeat socket)."""
        self.send_raw(self.frame(type, sid or self.sid, body), ident)

    def _take(self, ident: bytes, frame: bytes) -> Optional[Dict[str, Any]]:
        """Decode a session's frame; answer attach and heartbeats, keep progress; the rest is returned."""
        msg = P.decode(frame, sender="session")
        type_ = msg["type"]
        if type_ in (P.HELLO, P.ATTACH) and self.secret is not None:
            assert msg["body"]["secret"] == self.secret, f"{type_} with the wrong secret"
        if type_ in (P.HEARTBEAT, P.ATTACH):
            if type_ == P.ATTACH:
                self.beat_ident = ident
            self.heartbeats += type_ == P.HEARTBEAT
            if self.ack_heartbeats:
                self.send_raw(self.frame(P.HEARTBEAT_ACK, msg["sid"]), ident)
            return None
        if type_ == P.PROGRESS:
            self.progress.append(msg["body"])
            return None
        if type_ == P.HELLO:
            self.sid, self.ident = msg["sid"], ident
        self.received.append(msg)
        return msg

    def recv(self, expect: Optional[str] = None, timeout: float = 30.0) -> Dict[str, Any]:
        """The next session message (of type `expect`, if given), of the last hello's session."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recv_frame(0.1)
            msg = got and self._take(*got)
            if msg is None:
                continue
            assert msg["sid"] == self.sid
            if expect is not None:
                assert msg["type"] == expect, msg
            return msg
        raise AssertionError(f"{NO_MESSAGE} {timeout} s (waiting for {expect})")

    def of(self, type: str) -> List[Dict[str, Any]]:
        """The bodies of the `type` messages received so far."""
        return [m["body"] for m in self.received if m["type"] == type]

    # --- a managed worker --------------------------------------------------------------------
    def start_worker(self, timeout_ms: int = 10000, **extra_env: str) -> "FakeController":
        """`python -m trqat.worker` connected here, as the controller starts it (100 ms heartbeats)."""
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR, TRQAT_HEARTBEAT_MS="100", TRQAT_ENDPOINT=self.endpoint,
                   TRQAT_SECRET=self.secret or "", TRQAT_CONTROLLER_TIMEOUT_MS=str(timeout_ms), **extra_env)
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TRQAT_AUTH_FILE", "TRQAT_RUN_DIR"):
            env.pop(name, None)
        # as the controller does: through the fork server when there is one (scripts/pytest.mjs starts it)
        self.proc = subprocess.Popen([sys.executable, "-u", *forkserver.command("trqat.worker")],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return self

    def wait_worker(self, timeout: float = 30.0) -> Tuple[int, str]:
        """Exit code and stderr of the worker, answering heartbeats meanwhile (killed after `timeout`)."""
        assert self.proc is not None, "start_worker() first"
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            got = self.recv_frame(0.1)
            if got is not None:
                self._take(*got)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.returncode, self.proc.stderr.read()

    # --- auto-replying, like `trqat serve` ---------------------------------------------------
    def serve(self, config: Dict[str, Any], *, reject: Optional[str] = None,
              lrs: Callable[[int], Union[float, List[float]]] = lambda t: 0.05,
              freeze_after: Optional[int] = None, abort_after: Optional[int] = None) -> "FakeController":
        """Answer in a thread: hello -> welcome with `config` (or reject with `reason`), ready -> plan
        (the session's own numbers), step t -> lr (lr_quant = lrs(t), lr_other 0.01; k, K, R, U and the
        state from t), bye -> bye.
        - freeze_after: a hung controller: once step >= freeze_after has come, nothing is answered.
        - abort_after: the run ends (a rank died): abort on the heartbeat socket after the lr of that step."""
        self.config, self.reject, self.lrs = config, reject, lrs
        self.freeze_after, self.abort_after = freeze_after, abort_after
        self._thread = threading.Thread(target=self._serve, name="fake-controller", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                got = self.recv_frame(0.05)
                if got is None or self._frozen():
                    continue
                ident, _ = got
                msg = self._take(*got)
                if msg is not None:
                    self._answer(ident, msg)
        except BaseException as e:  # raised again by close(), in the test
            self._error = e

    def _frozen(self) -> bool:
        return self.freeze_after is not None and any(s["step"] >= self.freeze_after for s in self.of(P.STEP))

    def _answer(self, ident: bytes, msg: Dict[str, Any]) -> None:
        type_, sid, body = msg["type"], msg["sid"], msg["body"]
        if type_ == P.HELLO:
            if self.reject:
                self.send(P.REJECT, {"reason": self.reject}, ident, sid)
            else:
                self.send(P.WELCOME, {"config": self.config, "resume": None}, ident, sid)
        elif type_ == P.READY:
            self.send(P.PLAN, {"total_steps": body["total_steps"], "steps_per_epoch": body["steps_per_epoch"],
                               "start_step": body["start_step"]}, ident, sid)
        elif type_ == P.STEP:
            s = body["step"]
            self.send(P.LR, {"step": s, "lr_quant": self.lrs(s), "lr_other": 0.01, "stop": False, "eval": False,
                             "save": None, "k": None if s == 0 else 1e-3, "K": 0.001 * s, "R": 2e-3, "U": 0.05,
                             "state": {"K": 0.001 * s, "U": 0.05, "last_step": s}}, ident, sid)
            if self.abort_after is not None and s >= self.abort_after and self.beat_ident is not None:
                self.send(P.ABORT, {"reason": "rank 1 was killed by SIGKILL"}, self.beat_ident, sid)
        elif type_ == P.BYE:
            self.send(P.BYE, {}, ident, sid)

    # -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, end a worker still running, close the socket; raise what failed in serve()."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()
        self.sock.close()
        self.ctx.term()
        if self._error is not None:
            raise self._error
