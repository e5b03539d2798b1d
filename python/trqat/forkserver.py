"""A fork server for trqat's Python processes (managed workers, the export): torch imported once,
a process forked per start (test suites, sweeps: many short runs).

Importing torch costs ~2 s of CPU in every new Python process: on a test suite or a sweep of many
short runs that is most of a run's start-up. The server imports torch once and forks a process per
request; the process then imports trqat from the requesting checkout and runs as it would have.

    python -m trqat.forkserver serve --socket PATH [--parent PID]   # the server (until SIGTERM)
    TRQAT_FORKSERVER=PATH trqat train ...                            # the controller uses it

With TRQAT_FORKSERVER set, the controller starts `python -m trqat.forkserver run trqat.worker`
instead of `python -m trqat.worker` (the same for `trqat.export`): a light client (no torch) that
hands the server its stdin, stdout and stderr, its environment, working folder and arguments, and
then stands in for the forked process: signals sent to it reach that process, and it exits as that
process did (its code, or killed by the same signal). A client killed outright (SIGKILL) takes its
process with it. `run FILE.py` runs a script as `python FILE.py` would.

A server that does not answer, or runs another interpreter, another checkout's trqat or in another
namespace (a container, `unshare`), is not used: the client then runs the module itself, as if
TRQAT_FORKSERVER were unset, and says so once on stderr.
"""
import argparse
import io
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import types
from types import TracebackType
from typing import Any, Dict, List, Mapping, NoReturn, Optional

ENV = "TRQAT_FORKSERVER"
_LENGTH = struct.Struct("!I")  # each message: its length, then its JSON
_STDIO = 3  # the client's fds 0, 1, 2 travel with the request
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_PARENT_POLL_S = 1.0  # how often the server checks that its --parent still runs


def _send(sock: socket.socket, message: Dict[str, Any], fds: Optional[List[int]] = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [_LENGTH.pack(len(data))], fds)
    else:
        sock.sendall(_LENGTH.pack(len(data)))
    sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError("the connection closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket, with_fds: bool = False) -> "tuple[Dict[str, Any], List[int]]":
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, _STDIO)
        if not head:
            raise EOFError("the connection closed")
        head += _recv_exact(sock, _LENGTH.size - len(head))
    else:
        head, fds = _recv_exact(sock, _LENGTH.size), []
    return json.loads(_recv_exact(sock, _LENGTH.unpack(head)[0])), list(fds)


def _identity() -> Dict[str, str]:
    """What must match between a client and the server for a fork to equal a fresh process: the
    interpreter, the trqat checkout, and the namespaces (a client in a container or an `unshare`
    sees other files, pids and users than the server's forks would)."""
    import trqat
    identity = {"executable": os.path.realpath(sys.executable), "prefix": sys.prefix,
                "trqat": os.path.dirname(os.path.realpath(trqat.__file__))}
    for ns in ("mnt", "pid", "user", "net"):
        try:
            identity[f"{ns} namespace"] = os.readlink(f"/proc/self/ns/{ns}")
        except OSError:
            pass
    return identity


# --- the client: stands in for the worker --------------------------------------------------------

def _is_script(target: str) -> bool:
    return target.endswith(".py")


def command(target: str, env: Optional[Mapping[str, str]] = None) -> List[str]:
    """The arguments after `python -u` that start `target` (a module, or a FILE.py) as the controller
    starts it (pythonCommand in src/bridge/launcher.ts): through the fork server when $TRQAT_FORKSERVER
    is set in `env` (default: this process's environment)."""
    if (os.environ if env is None else env).get(ENV):
        return ["-m", "trqat.forkserver", "run", target]
    return [target] if _is_script(target) else ["-m", target]


def run(module: str, args: List[str]) -> NoReturn:
    """Runs `python -m module args` (or `python module args` for a .py file) in a process forked by the
    server at $TRQAT_FORKSERVER, and exits as it does."""
    if _is_script(module):
        module = os.path.abspath(module)
    path = os.environ.get(ENV, "")
    forked: List[int] = []  # its pid, once the server says it
    pending: List[int] = []  # signals that came before: the module may already run (and print) by then

    def forward(signum: int, _frame: Any) -> None:
        if not forked:
            pending.append(signum)
            return
        try:
            os.kill(forked[0], signum)
        except ProcessLookupError:
            pass
    for signum in _FORWARDED:
        signal.signal(signum, forward)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        _send(sock, {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ),
                     "path": sys.path[1:], **_identity()}, [0, 1, 2])
        reply, _ = _recv(sock)
    except (OSError, EOFError, ValueError) as e:
        _run_here(module, args, f"the fork server at {path or '(unset)'} does not answer ({e})", pending)
    if "refused" in reply:
        _run_here(module, args, f"the fork server at {path} cannot start it: {reply['refused']}", pending)
    forked.append(int(reply["pid"]))
    for signum in pending:
        forward(signum, None)
    try:
        status, _ = _recv(sock)
    except (OSError, EOFError, ValueError) as e:
        forward(signal.SIGKILL, None)
        print(f"trqat: lost the fork server at {path} while {module} ran ({e})", file=sys.stderr)
        os._exit(1)
    if status.get("signal"):
        signum = int(status["signal"])
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be handled, nor reset
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        time.sleep(1)  # a signal that does not kill (SIGCHLD-like) should not happen; exit anyway
    os._exit(int(status.get("code", 1)))


def _run_here(module: str, args: List[str], why: str, pending: List[int]) -> NoReturn:
    print(f"trqat: {why}; starting {module} in a process of its own", file=sys.stderr)
    sys.stderr.flush()
    for signum in _FORWARDED:
        signal.signal(signum, signal.SIG_DFL)
    for signum in pending:  # what came while we asked the server: as if it had come to the module's process
        os.kill(os.getpid(), signum)
    os.execv(sys.executable, [sys.executable, "-u", *([module] if _is_script(module) else ["-m", module]), *args])


# --- the server ----------------------------------------------------------------------------------

def serve(path: str, parent: Optional[int], preload: List[str]) -> int:
    """Imports `preload`, then forks a process per request on the Unix socket `path` until SIGTERM or SIGINT
    (or until `parent` is gone)."""
    import importlib
    for name in preload:
        importlib.import_module(name)
    identity = _identity()
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(_PARENT_POLL_S)

    def stop(*_: Any) -> NoReturn:
        raise _Stop()  # out of accept() at once, not at its next poll
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # each request's supervisor is reaped by the kernel
    print(f"trqat fork server: pid {os.getpid()}, socket {path}, preloaded {', '.join(preload) or 'nothing'}", file=sys.stderr, flush=True)
    try:
        while True:
            if parent is not None and not _alive(parent):
                break
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            with conn:
                fds: List[int] = []
                try:
                    conn.settimeout(10)
                    request, fds = _recv(conn, with_fds=True)
                    conn.settimeout(None)
                    mismatch = [key for key, value in identity.items() if request.get(key) != value]
                    if mismatch or len(fds) != _STDIO:
                        why = f"it differs in {', '.join(mismatch)}" if mismatch else "the client's stdio did not arrive"
                        _send(conn, {"refused": why})
                        continue
                    sys.stdout.flush()
                    sys.stderr.flush()
                    if os.fork() == 0:  # the request's supervisor
                        listener.close()
                        _supervise(conn, request, fds)
                except (OSError, EOFError, ValueError):
                    pass  # a client that went away before its request was whole: nothing was started
                finally:
                    for fd in fds:
                        os.close(fd)
    except _Stop:
        pass
    finally:
        listener.close()
        try:
            os.unlink(path)
        except OSError:
            pass
    return 0


class _Stop(Exception):
    """SIGTERM or SIGINT reached the server."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _supervise(conn: socket.socket, request: Dict[str, Any], fds: List[int]) -> NoReturn:
    """Forks the worker, tells the client its pid, and reports how it ended; kills it if the client goes."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # waitpid below needs the worker's status
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client forwards what is meant for the worker
    try:
        pid = os.fork()
    except OSError as e:
        _send(conn, {"refused": f"fork failed ({e})"})
        os._exit(0)
    if pid == 0:
        conn.close()
        _become(request, fds)
    print(f"trqat fork server: forked {pid} for {request['module']}", file=sys.stderr, flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)  # the server's stdio is its starter's pipe: not held open by a run
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for fd in (devnull, *fds):
        os.close(fd)

    def client_gone() -> None:
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)  # the client was killed outright: so is its worker
        except ProcessLookupError:
            pass
    try:
        _send(conn, {"pid": pid})
    except OSError:
        os.kill(pid, signal.SIGKILL)
    threading.Thread(target=client_gone, daemon=True).start()
    _, status = os.waitpid(pid, 0)
    result = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"code": os.WEXITSTATUS(status)}
    try:
        _send(conn, result)
    except OSError:
        pass
    os._exit(0)


def _become(request: Dict[str, Any], fds: List[int]) -> NoReturn:
    """In the forked worker: take the client's stdio, environment, folder and arguments, then run the module."""
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    # unbuffered, as `python -u` (the client's stderr is the run's worker.log and the error tail)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True, errors="backslashreplace")
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    target = request["module"]
    sys.path[:] = [os.path.dirname(target) if _is_script(target) else request["cwd"], *request["path"]]
    sys.argv = [target, *request["args"]]
    import random
    random.seed()  # a fresh process draws its own seed; a fork would share the server's
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))  # OpenMP read the server's environment at load
    os._exit(_run_as_main(target))


def _run_as_main(target: str) -> int:
    """Runs the module or script as `__main__` and ends as the interpreter would: its non-daemon threads
    joined, its atexit functions run, stdio flushed; a KeyboardInterrupt kills it with SIGINT (CPython's
    exit status for an uncaught Ctrl-C). Returns the exit code."""
    import atexit
    code, interrupted = 0, False
    try:
        main, main_code = _main_module(target)
        sys.modules["__main__"] = main  # held until the end, as the interpreter holds its __main__ (atexit code reads its objects)
        sys.argv[0] = main.__file__
        exec(main_code, main.__dict__)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # as uncaught: sys.excepthook (trqat's Client reports it), exit status 1
        tb = _own_frames(e.__traceback__)
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb  # as the interpreter sets them (atexit code reads them)
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        code, interrupted = 1, isinstance(e, KeyboardInterrupt)
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own step at exit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _main_module(target: str) -> "tuple[types.ModuleType, types.CodeType]":
    """The `__main__` module that `python FILE` or `python -m MODULE` would make, and the code to run in it."""
    import builtins
    import importlib.util
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if _is_script(target):
        with io.open_code(target) as f:
            main.__file__ = target
            return main, compile(f.read(), target, "exec")
    spec = importlib.util.find_spec(target)
    if spec is not None and spec.submodule_search_locations is not None:  # a package: its __main__
        spec = importlib.util.find_spec(f"{target}.__main__")
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
        raise ImportError(f"No module named {target}")
    main.__spec__, main.__loader__, main.__package__ = spec, spec.loader, spec.parent
    main.__file__, main.__cached__ = spec.origin, spec.cached
    code = spec.loader.get_code(spec.name)  # type: ignore[attr-defined]
    if code is None:
        raise ImportError(f"No code object available for {target}")
    return main, code


def _own_frames(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """The traceback from the module's first frame on, as `python -m`/`python FILE` would print it."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trqat.forkserver", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="import torch once and fork a worker per request")
    s.add_argument("--socket", required=True, help="the Unix socket to listen on (point TRQAT_FORKSERVER at it)")
    s.add_argument("--parent", type=int, default=None, help="exit when this process is gone (the test runner that started it)")
    s.add_argument("--preload", default="torch", help="comma-separated modules to import before forking (default: torch)")
    r = sub.add_parser("run", help="run a module (or a .py file) in a process forked by the server at $TRQAT_FORKSERVER")
    r.add_argument("module", help="a module, as python -m takes it, or the path of a .py script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.socket, args.parent, [name for name in args.preload.split(",") if name])
    run(args.module, args.args)


if __name__ == "__main__":
    sys.exit(main())
