"""The GPU check's pyzmq stand-in (scripts/gpu/zmq_shim), against the real libzmq: the sockets, options
and errors trqat's transport and the fake controllers use, CURVE, and pyzmq as the peer. Its end-to-end
run with the real controller is in scripts/gpu/prepare.sh. Skipped where libzmq.so.5 is missing."""
import importlib.util
import os
import threading
import time

import pytest

SHIM = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "gpu", "zmq_shim", "zmq", "__init__.py")


def load_shim():
    spec = importlib.util.spec_from_file_location("trqat_zmq_shim", SHIM)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        pytest.skip(str(e), allow_module_level=True)
    return module


shim = load_shim()


@pytest.fixture
def ctx():
    context = shim.Context()
    yield context
    context.term()


def pair(ctx, **dealer_options):
    router = ctx.socket(shim.ROUTER)
    router.setsockopt(shim.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(shim.DEALER)
    dealer.setsockopt(shim.LINGER, 0)
    for name, value in dealer_options.items():
        setattr(dealer, name, value)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return router, dealer


def test_the_constants_are_pyzmqs():
    zmq = pytest.importorskip("zmq")
    for name in ["DEALER", "ROUTER", "LINGER", "MAXMSGSIZE", "NOBLOCK", "SNDMORE", "RCVMORE", "POLLIN", "POLLOUT",
                 "CURVE_SERVER", "CURVE_PUBLICKEY", "CURVE_SECRETKEY", "CURVE_SERVERKEY", "LAST_ENDPOINT", "ETERM"]:
        assert getattr(shim, name) == int(getattr(zmq, name)), name


def test_router_and_dealer_exchange_frames(ctx):
    router, dealer = pair(ctx)
    assert router.poll(50) == 0  # nothing yet: poll times out, and NOBLOCK raises Again
    with pytest.raises(shim.Again):
        router.recv(shim.NOBLOCK)
    payload = bytes(range(256)) * 4000  # binary, with zero bytes, over a megabyte
    dealer.send(payload)
    assert router.poll(5000) & shim.POLLIN
    ident, frame = router.recv_multipart()
    assert frame == payload
    router.send_multipart([ident, b"", b"reply"])
    assert dealer.poll(5000)
    assert dealer.recv() == b"" and dealer.recv() == b"reply"
    assert router.getsockopt(shim.LAST_ENDPOINT).startswith(b"tcp://127.0.0.1:")
    dealer.setsockopt(shim.MAXMSGSIZE, 2**33)  # an int64 option
    assert dealer.getsockopt(shim.MAXMSGSIZE) == 2**33
    router.close()
    dealer.close(linger=0)
    assert dealer.closed


def test_a_thread_blocked_in_poll_does_not_block_the_others(ctx):
    router, dealer = pair(ctx)
    got = []
    waiter = threading.Thread(target=lambda: got.append(router.poll(5000)))
    waiter.start()
    time.sleep(0.1)  # the waiter sits in zmq_poll; this thread must still run (the GIL is released)
    dealer.send(b"x")
    waiter.join(5)
    assert got and got[0] & shim.POLLIN
    router.close()
    dealer.close()


def test_curve_lets_only_holders_of_the_server_key_in(ctx):
    server_public, server_secret = shim.curve_keypair()
    assert len(server_public) == 40 and len(server_secret) == 40
    router = ctx.socket(shim.ROUTER)
    router.setsockopt(shim.LINGER, 0)
    router.curve_server = True
    router.curve_secretkey = server_secret
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def client(server_key):
        sock = ctx.socket(shim.DEALER)
        sock.setsockopt(shim.LINGER, 0)
        sock.curve_serverkey = server_key
        sock.curve_publickey, sock.curve_secretkey = shim.curve_keypair()
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    good, bad = client(server_public), client(shim.curve_keypair()[0])
    bad.send(b"intruder")
    good.send(b"member")
    assert router.poll(5000)
    assert router.recv_multipart()[1] == b"member"
    assert router.poll(300) == 0  # the peer with the wrong server key never got through
    for sock in (router, good, bad):
        sock.close()


def test_pyzmq_is_a_peer():
    zmq = pytest.importorskip("zmq")
    pctx = zmq.Context()
    router = pctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    ctx = shim.Context.instance()
    assert shim.Context.instance() is ctx
    dealer = ctx.socket(shim.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send_multipart([b"a", b"b"])
    assert router.poll(5000)
    ident, *frames = router.recv_multipart()
    assert frames == [b"a", b"b"]
    router.send_multipart([ident, b"back"])
    assert dealer.poll(5000) and dealer.recv() == b"back"
    dealer.close(linger=0)
    router.close()
    pctx.term()
