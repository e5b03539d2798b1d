"""A stand-in for pyzmq on the GPU check's machine only (scripts/gpu-check.sh), never used by trqat itself.

That machine has PyTorch but no pyzmq, and nothing can be installed there. This module binds libzmq
(the copy scripts/gpu/prepare.sh carries, or the system's) with ctypes and implements exactly the part
of pyzmq's API that python/trqat/transport.py and the Python tests' fake controllers use: Context
(also .instance()), DEALER/ROUTER sockets with setsockopt (LINGER, MAXMSGSIZE, ...), the curve_*
key attributes, connect, bind, bind_to_random_port, send/recv (NOBLOCK), send_multipart/
recv_multipart, poll, close(linger=), term, curve_keypair, Again and ZMQError. Anything else
raises AttributeError: extend it here when the product starts using more of pyzmq.

The library: $TRQAT_ZMQ_SHIM_LIB (a path), else libzmq.so.5 found the usual way (LD_LIBRARY_PATH,
the loader's cache). ctypes releases the GIL during every libzmq call, as pyzmq does, so a thread
blocked in poll() does not stop the others.
"""
import ctypes
import errno as _errno
import os
import threading
from typing import List, Optional, Tuple, Union

__all__ = [
    "Context", "Socket", "ZMQError", "Again", "ContextTerminated", "curve_keypair", "zmq_version", "has",
    "DEALER", "ROUTER", "LINGER", "MAXMSGSIZE", "NOBLOCK", "DONTWAIT", "SNDMORE", "RCVMORE", "POLLIN", "POLLOUT",
    "CURVE_SERVER", "CURVE_PUBLICKEY", "CURVE_SECRETKEY", "CURVE_SERVERKEY", "LAST_ENDPOINT",
]

# zmq.h (libzmq 4.x)
PAIR, PUB, SUB, REQ, REP, DEALER, ROUTER, PULL, PUSH = range(9)
AFFINITY, ROUTING_ID, RCVMORE, LINGER, MAXMSGSIZE, SNDHWM, RCVHWM = 4, 5, 13, 17, 22, 23, 24
RCVTIMEO, SNDTIMEO, LAST_ENDPOINT, ROUTER_MANDATORY, IMMEDIATE = 27, 28, 32, 33, 39
CURVE_SERVER, CURVE_PUBLICKEY, CURVE_SECRETKEY, CURVE_SERVERKEY = 47, 48, 49, 50
IDENTITY = ROUTING_ID
DONTWAIT = NOBLOCK = 1
SNDMORE = 2
POLLIN, POLLOUT, POLLERR = 1, 2, 4
EAGAIN, EINTR = _errno.EAGAIN, _errno.EINTR
ETERM = 156384712 + 53  # ZMQ_HAUSNUMERO + 53

_INT64_OPTIONS = {AFFINITY, MAXMSGSIZE}  # int64_t in libzmq; every other integer option is an int
_ATTRIBUTES = {  # pyzmq's socket attributes that stand for options
    "linger": LINGER, "curve_server": CURVE_SERVER, "curve_publickey": CURVE_PUBLICKEY,
    "curve_secretkey": CURVE_SECRETKEY, "curve_serverkey": CURVE_SERVERKEY, "routing_id": ROUTING_ID,
}


def _load() -> ctypes.CDLL:
    name = os.environ.get("TRQAT_ZMQ_SHIM_LIB") or "libzmq.so.5"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise ImportError(f"the zmq stand-in (scripts/gpu/zmq_shim) cannot load {name}: {e}; put libzmq.so.5 and "
                          f"its dependencies on LD_LIBRARY_PATH (scripts/gpu/env.sh unpacks them from .gpu/lib.tar.xz) "
                          f"or set TRQAT_ZMQ_SHIM_LIB") from None
    c = ctypes
    for fn, res, args in [
        ("zmq_ctx_new", c.c_void_p, []), ("zmq_ctx_term", c.c_int, [c.c_void_p]),
        ("zmq_socket", c.c_void_p, [c.c_void_p, c.c_int]), ("zmq_close", c.c_int, [c.c_void_p]),
        ("zmq_setsockopt", c.c_int, [c.c_void_p, c.c_int, c.c_void_p, c.c_size_t]),
        ("zmq_getsockopt", c.c_int, [c.c_void_p, c.c_int, c.c_void_p, c.POINTER(c.c_size_t)]),
        ("zmq_bind", c.c_int, [c.c_void_p, c.c_char_p]), ("zmq_connect", c.c_int, [c.c_void_p, c.c_char_p]),
        ("zmq_send", c.c_int, [c.c_void_p, c.c_void_p, c.c_size_t, c.c_int]),
        ("zmq_msg_init", c.c_int, [c.c_void_p]), ("zmq_msg_close", c.c_int, [c.c_void_p]),
        ("zmq_msg_recv", c.c_int, [c.c_void_p, c.c_void_p, c.c_int]),
        ("zmq_msg_data", c.c_void_p, [c.c_void_p]), ("zmq_msg_size", c.c_size_t, [c.c_void_p]),
        ("zmq_msg_more", c.c_int, [c.c_void_p]),
        ("zmq_poll", c.c_int, [c.c_void_p, c.c_int, c.c_long]),
        ("zmq_strerror", c.c_char_p, [c.c_int]),
        ("zmq_curve_keypair", c.c_int, [c.c_char_p, c.c_char_p]),
        ("zmq_has", c.c_int, [c.c_char_p]),
        ("zmq_version", None, [c.POINTER(c.c_int)] * 3),
    ]:
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


_lib = _load()


class _Msg(ctypes.Structure):
    _fields_ = [("_p", ctypes.c_void_p), ("_rest", ctypes.c_ubyte * 56)]  # zmq_msg_t: 64 bytes, pointer-aligned


class _PollItem(ctypes.Structure):
    _fields_ = [("socket", ctypes.c_void_p), ("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


class ZMQError(Exception):
    def __init__(self, errno: Optional[int] = None, msg: Optional[str] = None):
        self.errno = ctypes.get_errno() if errno is None else errno
        self.strerror = msg or _lib.zmq_strerror(self.errno).decode(errors="replace")
        super().__init__(self.strerror)

    def __str__(self) -> str:
        return self.strerror


class Again(ZMQError):
    pass


class ContextTerminated(ZMQError):
    pass


def _fail() -> ZMQError:
    err = ctypes.get_errno()
    cls = Again if err == EAGAIN else ContextTerminated if err == ETERM else ZMQError
    return cls(err)


def _check(rc: int) -> int:
    if rc == -1:
        raise _fail()
    return rc


def _retrying(call):
    """A blocking libzmq call, started again when a signal interrupted it (its Python handler runs in between)."""
    while True:
        rc = call()
        if rc != -1 or ctypes.get_errno() != EINTR:
            return _check(rc)


def zmq_version() -> str:
    v = [ctypes.c_int() for _ in range(3)]
    _lib.zmq_version(*[ctypes.byref(x) for x in v])
    return ".".join(str(x.value) for x in v)


def has(capability: str) -> bool:
    return bool(_lib.zmq_has(capability.encode()))


def curve_keypair() -> Tuple[bytes, bytes]:
    """A new CURVE key pair, (public, secret), each Z85-encoded (40 bytes)."""
    public, secret = ctypes.create_string_buffer(41), ctypes.create_string_buffer(41)
    _check(_lib.zmq_curve_keypair(public, secret))
    return public.value, secret.value


class Context:
    _instance: Optional["Context"] = None
    _instance_lock = threading.Lock()

    def __init__(self, io_threads: int = 1):
        self.handle = _lib.zmq_ctx_new()
        if not self.handle:
            raise _fail()
        self.closed = False

    @classmethod
    def instance(cls) -> "Context":
        with cls._instance_lock:
            if cls._instance is None or cls._instance.closed:
                cls._instance = cls()
            return cls._instance

    def socket(self, socket_type: int) -> "Socket":
        return Socket(self, socket_type)

    def term(self) -> None:
        """Waits for every socket of the context to be closed (and to send what it lingers on), as pyzmq's does."""
        if not self.closed:
            _retrying(lambda: _lib.zmq_ctx_term(self.handle))
            self.closed = True


class Socket:
    def __init__(self, context: Context, socket_type: int):
        handle = _lib.zmq_socket(context.handle, socket_type)
        if not handle:
            raise _fail()
        object.__setattr__(self, "handle", handle)
        object.__setattr__(self, "closed", False)

    def __setattr__(self, name: str, value) -> None:
        if name in _ATTRIBUTES:
            self.setsockopt(_ATTRIBUTES[name], value)
        else:
            object.__setattr__(self, name, value)

    def setsockopt(self, option: int, value: Union[int, bytes]) -> None:
        if isinstance(value, bytes):
            buf, size = ctypes.c_char_p(value), len(value)
        elif isinstance(value, (int, bool)):
            c = (ctypes.c_int64 if option in _INT64_OPTIONS else ctypes.c_int)(int(value))
            buf, size = ctypes.byref(c), ctypes.sizeof(c)
        else:
            raise TypeError(f"setsockopt({option}) takes an int or bytes, not {type(value).__name__}")
        _check(_lib.zmq_setsockopt(self.handle, option, buf, size))

    def getsockopt(self, option: int) -> Union[int, bytes]:
        if option == LAST_ENDPOINT or option in (CURVE_PUBLICKEY, CURVE_SECRETKEY, CURVE_SERVERKEY, ROUTING_ID):
            buf = ctypes.create_string_buffer(256)
            size = ctypes.c_size_t(256)
            _check(_lib.zmq_getsockopt(self.handle, option, buf, ctypes.byref(size)))
            return buf.raw[:size.value].rstrip(b"\0")
        c = (ctypes.c_int64 if option in _INT64_OPTIONS else ctypes.c_int)()
        size = ctypes.c_size_t(ctypes.sizeof(c))
        _check(_lib.zmq_getsockopt(self.handle, option, ctypes.byref(c), ctypes.byref(size)))
        return c.value

    def connect(self, addr: str) -> None:
        _check(_lib.zmq_connect(self.handle, addr.encode()))

    def bind(self, addr: str) -> None:
        _check(_lib.zmq_bind(self.handle, addr.encode()))

    def bind_to_random_port(self, addr: str) -> int:
        """Binds `addr` on a port the system picks (pyzmq's default port range only)."""
        self.bind(f"{addr}:*")
        return int(self.getsockopt(LAST_ENDPOINT).decode().rsplit(":", 1)[1])

    def send(self, data: bytes, flags: int = 0) -> None:
        data = bytes(data)
        _retrying(lambda: _lib.zmq_send(self.handle, data, len(data), flags))

    def recv(self, flags: int = 0) -> bytes:
        return self._recv(flags)[0]

    def _recv(self, flags: int) -> Tuple[bytes, bool]:
        msg = _Msg()
        _check(_lib.zmq_msg_init(ctypes.byref(msg)))
        try:
            size = _retrying(lambda: _lib.zmq_msg_recv(ctypes.byref(msg), self.handle, flags))
            data = ctypes.string_at(_lib.zmq_msg_data(ctypes.byref(msg)), size) if size else b""
            return data, bool(_lib.zmq_msg_more(ctypes.byref(msg)))
        finally:
            _lib.zmq_msg_close(ctypes.byref(msg))

    def send_multipart(self, parts: List[bytes], flags: int = 0) -> None:
        for i, part in enumerate(parts):
            self.send(part, flags | (SNDMORE if i < len(parts) - 1 else 0))

    def recv_multipart(self, flags: int = 0) -> List[bytes]:
        parts = []
        more = True
        while more:  # the parts after the first have arrived with it: only the first can block or fail with Again
            data, more = self._recv(flags if not parts else 0)
            parts.append(data)
        return parts

    def poll(self, timeout: Optional[float] = None, flags: int = POLLIN) -> int:
        """The events of `flags` that are ready within `timeout` ms (None or < 0: wait as long as it takes); 0 if none."""
        item = _PollItem(self.handle, 0, flags, 0)
        ms = -1 if timeout is None or timeout < 0 else int(timeout)
        _retrying(lambda: _lib.zmq_poll(ctypes.byref(item), 1, ms))
        return item.revents

    def close(self, linger: Optional[int] = None) -> None:
        if self.closed:
            return
        if linger is not None:
            self.setsockopt(LINGER, linger)
        _lib.zmq_close(self.handle)
        object.__setattr__(self, "closed", True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
