"""The session side of the bridge, shared by the managed worker and the plug-in client: who to
connect to and how to prove membership of the run, the DEALER sockets, the heartbeat thread
(docs/protocol.md, "Liveness"), and the session's messages in order: hello -> welcome,
ready -> plan, step -> lr, evaluated / saved / bye."""
import itertools
import json
import os
import platform
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
import zmq

from . import __version__
from . import protocol as P
from .distributed import Ranks
from .log import logger

POLL_MS = 100  # receive loops wake up this often to check on the heartbeat thread
DEFAULT_HEARTBEAT_MS = 1000
"""The controller's worker.heartbeat_interval_ms default, when neither the environment nor auth.json says."""
DEFAULT_CONTROLLER_TIMEOUT_MS = 4000
"""How long a silent controller is waited for when neither the environment nor auth.json says: the
controller's own value with its defaults (controllerTimeoutMs in src/bridge/auth.ts; test/bridge/controller-timeout.test.ts)."""


class TransportError(RuntimeError):
    """Something the user can act on: the message says what went wrong with the controller and how to fix it."""


class Unreachable(TransportError):
    """No controller answered the hello within the connect timeout."""


class Rejected(TransportError):
    """The controller refused this session (protocol version, secret, plan, a duplicate rank, ...)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Gone(TransportError):
    """The controller stopped answering heartbeats, or ended the run."""


class RunOver(TransportError):
    """A step past the end of the run, or after the controller stopped it."""


@dataclass(frozen=True)
class Credentials:
    """Where the controller is, and the run's secret (and CURVE server key beyond loopback)."""

    endpoint: str
    secret: str
    server_key: Optional[str] = None
    heartbeat_s: float = DEFAULT_HEARTBEAT_MS / 1000
    controller_timeout_s: float = DEFAULT_CONTROLLER_TIMEOUT_MS / 1000

    @staticmethod
    def from_env(endpoint: Optional[str] = None) -> "Credentials":
        """TRQAT_ENDPOINT/TRQAT_SECRET/TRQAT_SERVER_KEY (set by the controller for the processes it
        starts), else the run's auth file: TRQAT_AUTH_FILE, or auth.json in TRQAT_RUN_DIR."""
        env = os.environ
        path = env.get("TRQAT_AUTH_FILE") or (os.path.join(env["TRQAT_RUN_DIR"], "auth.json") if env.get("TRQAT_RUN_DIR") else None)
        stored: Dict[str, Any] = {}
        if not env.get("TRQAT_SECRET") and path:
            try:
                with open(path) as f:
                    stored = json.load(f)
            except (OSError, ValueError) as e:
                raise TransportError(f"cannot read the run's auth file {path}: {e}") from None
        endpoint = endpoint or env.get("TRQAT_ENDPOINT") or stored.get("endpoint")
        if not endpoint:
            raise TransportError("no trqat controller endpoint: run the script under the controller "
                                 "(trqat run -- python your_script.py), or start `trqat serve` and set "
                                 "TRQAT_AUTH_FILE to the auth file it prints (or pass endpoint=...)")
        secret = env.get("TRQAT_SECRET") or stored.get("secret") or ""
        server_key = env.get("TRQAT_SERVER_KEY") or stored.get("server_key") or None
        heartbeat_ms = env.get("TRQAT_HEARTBEAT_MS") or stored.get("heartbeat_ms") or DEFAULT_HEARTBEAT_MS
        timeout_ms = env.get("TRQAT_CONTROLLER_TIMEOUT_MS") or stored.get("controller_timeout_ms") or DEFAULT_CONTROLLER_TIMEOUT_MS
        return Credentials(endpoint, secret, server_key, int(heartbeat_ms) / 1000, int(timeout_ms) / 1000)


def env_ms(name: str, default: int) -> float:
    """A duration from the environment, in milliseconds, returned in seconds."""
    value = os.environ.get(name)
    return (int(value) if value else default) / 1000


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


class Sender:
    """Numbered frames of one session: `seq` is shared by the main and the heartbeat socket."""

    def __init__(self, sid: str):
        self.sid = sid
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def frame(self, type: str, body: Optional[Dict[str, Any]] = None) -> bytes:
        with self._lock:
            seq = next(self._seq)
        return P.encode(type, self.sid, seq, body, sender="session")


def dealer(ctx: zmq.Context, credentials: Credentials) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)  # long enough to flush a final error/bye
    sock.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES)
    if credentials.server_key:  # CURVE: only peers that hold the server's key get through
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = credentials.server_key.encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.connect(credentials.endpoint)
    return sock


def send_nowait(sock: zmq.Socket, frame: bytes) -> None:
    try:  # never block: a blocked heartbeat thread could not notice a dead controller
        sock.send(frame, zmq.NOBLOCK)
    except zmq.Again:
        pass


def controller_parent() -> Optional[int]:
    """The pid of the controller that started this process (TRQAT_CONTROLLER_PID), or None under
    other launchers. Read from the environment, not from getppid(): a controller killed while this
    process was still starting has already left it to init."""
    pid = os.environ.get("TRQAT_CONTROLLER_PID", "")
    return int(pid) if pid.isdigit() else None


def controller_alive(pid: int) -> bool:
    """Whether the controller that started this process still runs: it is our parent, or (with a
    launcher such as a shell between us) a live process. A zombie counts as gone."""
    if os.getppid() == pid:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user took the pid: ours is gone
        return False
    return True


class Heartbeat(threading.Thread):
    """Joins the session on its own socket (zmq sockets are not thread-safe) with `attach`, sends
    `heartbeat` every interval, and calls `on_gone(reason)` once when no `heartbeat_ack` came for
    `timeout_s`, the socket fails, or the controller sends `abort`. The worker exits there; the
    client raises in the user's loop instead."""

    def __init__(self, ctx: zmq.Context, credentials: Credentials, sender: Sender, interval_s: float,
                 timeout_s: float, on_gone: Callable[[str], None]):
        super().__init__(name="trqat-heartbeat", daemon=True)
        self.ctx, self.credentials, self.sender = ctx, credentials, sender
        self.interval_s, self.timeout_s, self.on_gone = interval_s, timeout_s, on_gone
        self.stop = threading.Event()
        self.parent = controller_parent()

    def parent_gone(self) -> bool:
        return self.parent is not None and not controller_alive(self.parent)

    def run(self) -> None:
        try:
            sock = dealer(self.ctx, self.credentials)
            try:
                self._loop(sock)
            finally:
                sock.close(linger=0)
        except zmq.ZMQError as e:
            if not self.stop.is_set():
                self.on_gone(f"heartbeat socket failed: {e}")

    def _loop(self, sock: zmq.Socket) -> None:
        send_nowait(sock, self.sender.frame(P.ATTACH, {"secret": self.credentials.secret}))
        last_ack = time.monotonic()
        next_beat = last_ack + self.interval_s
        while not self.stop.is_set():
            now = time.monotonic()
            if self.parent_gone():  # a parent killed with SIGKILL sends no abort
                self.on_gone(f"the trqat controller (pid {self.parent}) is gone")
                return
            if now - last_ack > self.timeout_s:
                self.on_gone(f"the trqat controller at {self.credentials.endpoint} stopped answering for {self.timeout_s:g} s")
                return
            if now >= next_beat:
                send_nowait(sock, self.sender.frame(P.HEARTBEAT))
                next_beat = now + self.interval_s
            wait = min(next_beat - now, last_ack + self.timeout_s - now, POLL_MS / 1000)
            if sock.poll(max(wait, 0) * 1000):
                try:
                    msg = P.decode(sock.recv(), sender="controller")
                except P.ProtocolError as e:  # dropped, never fatal here
                    logger.warning("bad message on the heartbeat socket: %s", e)
                    continue
                if msg["type"] == P.HEARTBEAT_ACK:
                    last_ack = time.monotonic()
                elif msg["type"] == P.ABORT and not self.stop.is_set():
                    self.on_gone(f"the trqat controller ended the run: {msg['body']['reason']}")
                    return


class Session:
    """One session with a controller (docs/protocol.md): the managed worker and the client both use it.

    The main socket carries the session's messages in order; the heartbeat thread keeps the session
    alive on its own socket. `gone` is set (and `on_gone` called) when the controller is gone or
    ended the run; waiting for a reply raises TransportError then, never hangs.
    """

    def __init__(self, role: str, ranks: Ranks, credentials: Credentials, *, heartbeat_s: float, timeout_s: float,
                 on_gone: Optional[Callable[[str], None]] = None):
        self.role, self.ranks, self.credentials = role, ranks, credentials
        self.sender = Sender(secrets.token_hex(8))
        self.ctx = zmq.Context()
        self.sock = dealer(self.ctx, credentials)
        self.gone: Optional[str] = None
        self._on_gone = on_gone
        self.heartbeat = Heartbeat(self.ctx, credentials, self.sender, heartbeat_s, timeout_s, self._gone)
        self._closed = False

    @property
    def sid(self) -> str:
        return self.sender.sid

    def _gone(self, reason: str) -> None:
        self.gone = reason
        if self._on_gone is not None:
            self._on_gone(reason)

    # --- messages --------------------------------------------------------------------------
    def send(self, type: str, body: Optional[Dict[str, Any]] = None) -> None:
        self.sock.send(self.sender.frame(type, body))

    def recv(self, expected: Iterable[str], timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """The next message from the controller, which must be one of `expected`. No timeout of its
        own unless `timeout_s`: while heartbeats are answered the controller is alive."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.sock.poll(POLL_MS):
            if self.gone:
                raise Gone(self.gone)
            if not self.heartbeat.is_alive() and self.heartbeat.parent_gone():  # before the welcome: no heartbeat yet
                raise Gone(f"the trqat controller (pid {self.heartbeat.parent}) is gone")
            if deadline is not None and time.monotonic() > deadline:
                raise Unreachable(f"no trqat controller answered at {self.credentials.endpoint} within {timeout_s:g} s: "
                                     f"is `trqat run` or `trqat serve` running there? (TRQAT_ENDPOINT, TRQAT_AUTH_FILE)")
        try:
            msg = P.decode(self.sock.recv(), check_version=False, sender="controller")
        except P.ProtocolError as e:
            raise TransportError(f"bad message from the trqat controller: {e}") from None
        if msg["type"] == P.REJECT:
            reason = str(msg["body"].get("reason"))
            raise Rejected(f"the trqat controller at {self.credentials.endpoint} refused this {self.role}: {reason}", reason)
        if msg["v"] != P.PROTOCOL_VERSION:
            raise Rejected(f"protocol version mismatch: the controller speaks version {msg['v']}, this {self.role} speaks "
                           f"version {P.PROTOCOL_VERSION}; install matching versions of the trqat npm package and the trqat "
                           f"Python package", f"version {msg['v']}")
        if msg["sid"] != self.sid:
            raise TransportError(f"message for session {msg['sid']!r} on session {self.sid!r}")
        if msg["type"] == P.ERROR:
            text = msg["body"]["message"]
            cls = RunOver if ("past the end" in text or "stopped the run" in text) else TransportError
            raise cls(f"the trqat controller reported: {text}")
        if msg["type"] == P.ABORT:
            raise Gone(f"the trqat controller ended the run: {msg['body']['reason']}")
        expected = tuple(expected)
        if msg["type"] not in expected:
            raise TransportError(f"unexpected {msg['type']!r} from the trqat controller while waiting for {' or '.join(expected)}")
        return msg

    # --- the session, in order -------------------------------------------------------------
    def hello(self, device: torch.device, connect_timeout_s: Optional[float] = None) -> Tuple[Dict[str, Any], Optional[str]]:
        """hello -> welcome: returns the run config and the checkpoint folder to resume from (or None)."""
        self.send(P.HELLO, {
            "protocol": P.PROTOCOL_VERSION, "role": self.role, "rank": self.ranks.rank,
            "world_size": self.ranks.world_size, "local_rank": self.ranks.local_rank, "pid": os.getpid(),
            "hostname": socket.gethostname(), "device": str(device), "device_name": device_name(device),
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "trqat_version": __version__, "secret": self.credentials.secret,
        })
        body = self.recv((P.WELCOME,), connect_timeout_s)["body"]
        self.heartbeat.start()
        return body["config"], body["resume"]

    def ready(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """ready -> plan: {total_steps, steps_per_epoch, start_step}."""
        self.send(P.READY, body)
        return self.recv((P.PLAN,))["body"]

    def step(self, step: int, counts: Optional[list], last: Optional[Dict[str, Any]], extra: Optional[Dict[str, Any]] = None) -> None:
        """`extra`: the step's optional fields (the distance diagnostics, trqat.diagnostics.step_fields)."""
        self.send(P.STEP, {"step": step, "counts": counts, "last": last, **(extra or {})})

    def lr(self, step: int) -> Dict[str, Any]:
        """The decision of `step`, once every rank has reported it."""
        body = self.recv((P.LR,))["body"]
        if body["step"] != step:
            raise TransportError(f"the controller sent the LRs of step {body['step']} while step {step} waits")
        return body

    def bye(self, last: Optional[Dict[str, Any]] = None, error: Optional[str] = None, timeout_s: float = 10.0) -> None:
        """Says bye and waits (briefly) for the answer, so the controller has the last statistics."""
        if self.gone:
            return
        body: Dict[str, Any] = {"last": last}
        if error:
            body["error"] = error[:4000]
        self.send(P.BYE, body)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.gone:
            if self.sock.poll(POLL_MS):
                try:
                    if P.decode(self.sock.recv(), check_version=False, sender="controller")["type"] in (P.BYE, P.ERROR, P.ABORT):
                        return
                except P.ProtocolError:
                    continue

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.heartbeat.stop.set()
        if self.heartbeat.is_alive():
            self.heartbeat.join()
        self.sock.close(linger=0 if self.gone else 1000)  # lingers to deliver the last message, if anyone is there
        self.ctx.term()
