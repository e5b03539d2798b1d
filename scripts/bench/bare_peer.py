"""The Python half of the bare exchange: a DEALER that sends `step`-shaped messages and waits for an
`lr`-shaped reply, with exactly the worker's own send/receive code path (trqat.protocol encode,
poll + recv, decode, sid and type checks), against a Node ROUTER that answers each frame with a
fixed, pre-encoded reply (bridge.mjs). Nothing else runs on either side.

Usage: python bare_peer.py ENDPOINT N LAYERS   -> one JSON line {rtt_ns: [...]}
"""
import json
import secrets
import sys
import time

import zmq

from trqat import protocol as P
from trqat.transport import POLL_MS, Credentials, Sender, dealer
from null_worker import NullTrainer


def main() -> None:
    endpoint, n, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = zmq.Context()
    sock = dealer(ctx, Credentials(endpoint, ""))
    sender = Sender(secrets.token_hex(8))
    trainer = NullTrainer({"data": {"batch_size": 128}}, layers)
    trainer._first = False
    last = {"loss": 0.5, "correct": 60, "samples": 128}
    rtt = []
    for step in range(n):
        counts = trainer.counts()
        t0 = time.perf_counter_ns()
        sock.send(sender.frame(P.STEP, {"step": step, "counts": counts, "last": last}))
        while not sock.poll(POLL_MS):
            pass
        msg = P.decode(sock.recv())
        if msg["sid"] != sender.sid or msg["type"] != P.LR:
            raise SystemExit(f"bare_peer: unexpected reply {msg}")
        rtt.append(time.perf_counter_ns() - t0)
        trainer.step += 1
    sock.close(linger=0)
    ctx.term()
    print(json.dumps({"rtt_ns": rtt}))


if __name__ == "__main__":
    main()
