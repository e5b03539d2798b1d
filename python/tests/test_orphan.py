"""A worker whose controller is killed (SIGKILL: no abort, no bye) exits on its own, whenever that
happens: while the worker is still importing torch, while it waits for the welcome, or later (the
heartbeat thread's watch, tested end to end in test/e2e/failures.test.ts)."""
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from processes import alive

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..")
EXIT_CONTROLLER_GONE = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The stand-in controller: starts the worker as the controller does (TRQAT_CONTROLLER_PID = its own
# pid), prints the worker's pid, and dies without a word after `delay` seconds. Nothing listens on
# the endpoint, so the worker never gets a welcome.
LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time
    delay, endpoint, python_dir, log = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    env = dict(os.environ, TRQAT_CONTROLLER_PID=str(os.getpid()), TRQAT_ENDPOINT=endpoint, TRQAT_SECRET="s" * 32,
               PYTHONPATH=python_dir)
    worker = subprocess.Popen([sys.executable, "-u", "-m", "trqat.worker"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    print(worker.pid, flush=True)
    time.sleep(delay)
    os.kill(os.getpid(), 9)
""")


@pytest.mark.parametrize("delay", [0.0, 6.0], ids=["killed-while-the-worker-starts", "killed-while-it-waits-for-the-welcome"])
def test_a_worker_whose_controller_was_killed_exits(tmp_path, delay):
    log = tmp_path / "worker.log"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(delay), f"tcp://127.0.0.1:{free_port()}", PYTHON_DIR, str(log)],
                                stdout=subprocess.PIPE, text=True)
    pid = int(launcher.stdout.readline())  # type: ignore[union-attr]
    launcher.wait(timeout=30)
    assert launcher.returncode == -9
    deadline = time.monotonic() + 30  # the worker imports torch first (a few seconds on a busy machine)
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    still_running = alive(pid)
    if still_running:
        os.kill(pid, 9)
    assert not still_running, f"the worker (pid {pid}) outlived its controller:\n{log.read_text()}"
    assert "is gone" in log.read_text()
