"""A script started by `trqat run` whose controller is SIGKILLed during start-up, before the script
has a session (it still loads its data), goes at once: `import trqat` armed the parent-death signal.
Before, it lingered until it built its Client (issue 19: "a `trqat run` script killed during
start-up lingers")."""
import os
import subprocess
import sys
import textwrap
import time

from processes import alive

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..")

# The stand-in controller: starts the script as `trqat run` does (TRQAT_CONTROLLER_PID = its own
# pid), waits for it to have imported trqat, prints its pid and dies without a word.
LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys
    script, python_dir, via_shell = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    env = dict(os.environ, TRQAT_CONTROLLER_PID=str(os.getpid()), PYTHONPATH=python_dir)
    command = ["sh", "-c", f'"{sys.executable}" -c "$0"; true', script] if via_shell else [sys.executable, "-c", script]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if via_shell else None, text=True)
    pid = child.stdout.readline().strip()
    print(pid, flush=True)
    os.kill(os.getpid(), 9)
""")

# The user's script: imports trqat, then "loads its data" for a minute before it would build a Client.
SCRIPT = "import os, time, trqat; print(os.getpid(), flush=True); time.sleep(60)"


def start(via_shell: bool) -> int:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, SCRIPT, PYTHON_DIR, "1" if via_shell else "0"],
                                stdout=subprocess.PIPE, text=True)
    pid = int(launcher.stdout.readline())  # type: ignore[union-attr]
    launcher.wait(timeout=30)
    assert launcher.returncode == -9
    return pid


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_script_whose_controller_was_killed_during_start_up_goes_at_once():
    pid = start(via_shell=False)
    gone = gone_within(pid, 5)
    if not gone:
        os.kill(pid, 9)
    assert gone, f"the script (pid {pid}) outlived its killed controller by 5 s"


def test_a_script_started_through_a_launcher_is_left_alone():
    pid = start(via_shell=True)  # its parent is the shell, not the controller: nothing is armed
    try:
        assert not gone_within(pid, 1.5)
    finally:
        os.kill(pid, 9)
