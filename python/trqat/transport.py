"""The DEALER side of the bridge, shared by the managed worker and the plug-in client: numbered
frames of one session, socket setup, the heartbeat thread (docs/protocol.md, "Liveness"), and
what a peer says about itself in its hello."""
import itertools
import os
import platform
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional

import torch
import zmq

from . import protocol as P

POLL_MS = 100  # receive loops wake up this often to check on the heartbeat thread


class Sender:
    """Numbered frames of one session: `seq` is shared by the main and the heartbeat socket."""

    def __init__(self, sid: str):
        self.sid = sid
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def frame(self, type: str, body: Optional[Dict[str, Any]] = None) -> bytes:
        with self._lock:
            seq = next(self._seq)
        return P.encode(type, self.sid, seq, body)


def env_int(*names: str, default: int) -> int:
    """The first of these environment variables that is set, as an int (torchrun's RANK too)."""
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)  # long enough to flush a final error/bye
    sock.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES)
    sock.connect(endpoint)
    return sock


def send_nowait(sock: zmq.Socket, frame: bytes) -> None:
    try:  # never block: a blocked heartbeat thread could not notice a dead controller
        sock.send(frame, zmq.NOBLOCK)
    except zmq.Again:
        pass


class Heartbeat(threading.Thread):
    """Sends `heartbeat` every interval on its own socket (zmq sockets are not thread-safe) and
    calls `on_gone(reason)` once when no `heartbeat_ack` came for `timeout_s`, or the socket fails.
    The worker exits there; the client raises in the user's loop instead."""

    def __init__(self, ctx: zmq.Context, endpoint: str, sender: Sender, interval_s: float, timeout_s: float,
                 on_gone: Callable[[str], None]):
        super().__init__(name="trqat-heartbeat", daemon=True)
        self.ctx, self.endpoint, self.sender = ctx, endpoint, sender
        self.interval_s, self.timeout_s, self.on_gone = interval_s, timeout_s, on_gone
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            sock = dealer(self.ctx, self.endpoint)
            try:
                self._loop(sock)
            finally:
                sock.close(linger=0)
        except zmq.ZMQError as e:
            if not self.stop.is_set():
                self.on_gone(f"heartbeat socket failed: {e}")

    def _loop(self, sock: zmq.Socket) -> None:
        last_ack = next_beat = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now - last_ack > self.timeout_s:
                self.on_gone(f"the trqat controller at {self.endpoint} stopped answering for {self.timeout_s:g} s")
                return
            if now >= next_beat:
                send_nowait(sock, self.sender.frame(P.HEARTBEAT))
                next_beat = now + self.interval_s
            wait = min(next_beat - now, last_ack + self.timeout_s - now, POLL_MS / 1000)
            if sock.poll(max(wait, 0) * 1000):
                try:
                    msg = P.decode(sock.recv())
                except P.ProtocolError as e:  # answered and dropped, never fatal here
                    print(f"trqat: bad message on the heartbeat socket: {e}", file=sys.stderr, flush=True)
                    send_nowait(sock, self.sender.frame(P.ERROR, {"message": str(e)}))
                    continue
                if msg["type"] == P.HEARTBEAT_ACK:
                    last_ack = time.monotonic()
