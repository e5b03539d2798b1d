"""The fork server (trqat/forkserver.py): a module run through it behaves as a process of its own
would, to whoever started the client: its arguments, folder, environment and stdio, its exit code or
signal, signals sent to the client, the client killed outright; and without a usable server, the
module runs in the client's own process. The module here is a probe, not the worker (the vitest
suite runs every managed worker through a fork server, and test/e2e/forkserver.test.ts compares
a run with and without one)."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from processes import alive

PYTHON_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

PROBE = textwrap.dedent("""
    import json, os, random, signal, sys, time
    if sys.argv[1] == "sleep":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(), "flag": os.environ.get("PROBE_FLAG"),
                      "random": random.random(), "main": __name__}), flush=True)
    print("to stderr", file=sys.stderr)
    what = sys.argv[1]
    if what == "exit":
        sys.exit(int(sys.argv[2]))
    if what == "raise":
        raise RuntimeError("the probe failed")
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "sleep":
        time.sleep(60)
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "atexit":  # trqat's Client says bye at exit from a WeakSet of the script's open clients
        import atexit, threading, weakref
        class Held: pass
        held = Held()
        open_ones = weakref.WeakSet([held])
        atexit.register(lambda: print(f"atexit ran, {len(open_ones)} held", flush=True))
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread ran", flush=True))).start()
        sys.exit(3)
""")


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "probe.py").write_text(PROBE)
    return tmp_path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A fork server with nothing preloaded (the test is of the forking, not of torch)."""
    sock = str(tmp_path / "fs.sock")
    proc = subprocess.Popen([sys.executable, "-m", "trqat.forkserver", "serve", "--socket", sock, "--preload", ""],
                            env=dict(os.environ, PYTHONPATH=PYTHON_DIR), stderr=subprocess.PIPE, text=True)
    assert "socket" in proc.stderr.readline()  # type: ignore[union-attr]
    yield sock
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not os.path.exists(sock)  # the socket is removed on the way out


def client(probe_dir: Path, sock: str, args: List[str], python_dir: str = PYTHON_DIR, **popen: object) -> "subprocess.Popen[str]":
    env: Dict[str, str] = dict(os.environ, PYTHONPATH=f"{probe_dir}{os.pathsep}{python_dir}", TRQAT_FORKSERVER=sock, PROBE_FLAG="on")
    cwd = probe_dir / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "trqat.forkserver", "run", "probe", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]


def first_line(proc: "subprocess.Popen[str]") -> dict:
    import json
    return json.loads(proc.stdout.readline())  # type: ignore[union-attr]


def test_the_module_gets_the_clients_arguments_folder_environment_and_stdio_and_its_exit_code(probe_dir: Path, server: str) -> None:
    proc = client(probe_dir, server, ["exit", "7"])
    seen = first_line(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert seen["argv"] == ["exit", "7"] and seen["main"] == "__main__" and seen["flag"] == "on"
    assert seen["cwd"] == str(probe_dir / "elsewhere")
    assert seen["pid"] != proc.pid  # forked by the server, not run in the client
    assert err == "to stderr\n"  # nothing of the server's or the client's own


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(probe_dir: Path, server: str) -> None:
    proc = client(probe_dir, server, ["raise"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "Traceback" in err and "RuntimeError: the probe failed" in err


def test_it_ends_as_the_interpreter_would_threads_joined_atexit_run_ctrl_c_a_sigint(probe_dir: Path, server: str) -> None:
    proc = client(probe_dir, server, ["atexit"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3 and out.splitlines()[1:] == ["thread ran", "atexit ran, 1 held"]
    proc = client(probe_dir, server, ["interrupt"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err  # what CPython does on an uncaught Ctrl-C


def test_a_module_killed_by_a_signal_kills_the_client_with_it(probe_dir: Path, server: str) -> None:
    proc = client(probe_dir, server, ["kill"])
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_signals_sent_to_the_client_reach_the_module(probe_dir: Path, server: str) -> None:
    proc = client(probe_dir, server, ["sleep"])
    pid = first_line(proc)["pid"]
    proc.send_signal(signal.SIGINT)  # the probe ignores it, as the worker does
    time.sleep(0.3)
    assert alive(pid) and proc.poll() is None
    proc.terminate()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert not alive(pid)


def test_a_signal_that_comes_before_the_servers_answer_reaches_the_module(probe_dir: Path, tmp_path: Path) -> None:
    """The forked module may already run (and print) while its pid is on its way to the client: a
    signal sent to the client then is held and forwarded once the pid arrives. A stand-in server
    holds its answer back; the "module" is a sleep process."""
    import socket
    import threading
    from trqat import forkserver

    path = str(tmp_path / "slow.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    module = subprocess.Popen(["sleep", "60"])
    asked, answer = threading.Event(), threading.Event()

    def slow_server() -> None:
        conn, _ = listener.accept()
        _, fds = forkserver._recv(conn, with_fds=True)
        for fd in fds:
            os.close(fd)
        asked.set()
        answer.wait(30)
        forkserver._send(conn, {"pid": module.pid})
        module.wait(30)  # the forwarded signal ends it
        forkserver._send(conn, {"signal": -module.returncode} if module.returncode < 0 else {"code": module.returncode})
        conn.close()

    thread = threading.Thread(target=slow_server, daemon=True)
    thread.start()
    proc = client(probe_dir, path, ["sleep"])
    try:
        assert asked.wait(30)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None and module.poll() is None  # held, not acted on
        answer.set()
        proc.communicate(timeout=30)
        assert module.returncode == -signal.SIGTERM and proc.returncode == -signal.SIGTERM
    finally:
        answer.set()
        proc.kill()
        module.kill()
        listener.close()


def test_a_client_killed_outright_takes_its_module_with_it(probe_dir: Path, server: str) -> None:
    proc = client(probe_dir, server, ["sleep"])
    pid = first_line(proc)["pid"]
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_forks_draw_their_own_random_seeds(probe_dir: Path, server: str) -> None:
    draws = []
    for _ in range(2):
        proc = client(probe_dir, server, ["exit", "0"])
        draws.append(first_line(proc)["random"])
        proc.communicate(timeout=30)
    assert draws[0] != draws[1]


def test_without_a_server_the_module_runs_in_the_clients_process_and_says_so(probe_dir: Path, tmp_path: Path) -> None:
    proc = client(probe_dir, str(tmp_path / "no-such.sock"), ["exit", "3"])
    seen = first_line(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert seen["pid"] == proc.pid  # the client became the module (exec)
    assert "fork server" in err and "does not answer" in err and "in a process of its own" in err


def test_a_client_of_another_checkout_is_refused_and_runs_its_own_code(probe_dir: Path, server: str, tmp_path: Path) -> None:
    other = tmp_path / "other-checkout"
    shutil.copytree(os.path.join(PYTHON_DIR, "trqat"), other / "trqat")
    proc = client(probe_dir, server, ["exit", "0"], python_dir=str(other))
    seen = first_line(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and seen["pid"] == proc.pid
    assert "cannot start it: it differs in trqat" in err


def test_a_client_in_another_mount_namespace_is_refused_and_runs_itself(probe_dir: Path, server: str) -> None:
    """A client inside `unshare` (or a container) sees other files than the server's forks would."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged user+mount namespaces here")
    env = dict(os.environ, PYTHONPATH=f"{probe_dir}{os.pathsep}{PYTHON_DIR}", TRQAT_FORKSERVER=server)
    out = subprocess.run(["unshare", "-rm", sys.executable, "-m", "trqat.forkserver", "run", "probe", "exit", "0"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "mnt namespace" in out.stderr and "in a process of its own" in out.stderr


def test_a_script_runs_as_python_FILE_would(probe_dir: Path, server: str) -> None:
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, TRQAT_FORKSERVER=server)
    proc = subprocess.Popen([sys.executable, "-m", "trqat.forkserver", "run", "probe.py", "exit", "5"], env=env, cwd=probe_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = first_line(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 5 and err == "to stderr\n"
    assert seen["pid"] != proc.pid and seen["argv"] == ["exit", "5"] and seen["main"] == "__main__"
