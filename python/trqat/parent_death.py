"""A process that a trqat controller started itself (TRQAT_CONTROLLER_PID is its parent) gets SIGTERM
from the kernel when that controller dies, however it dies (Linux's PR_SET_PDEATHSIG), from the
first `import trqat` on: a script killed with its controller during start-up, while it still loads
its data and has no session (so no heartbeat) yet, does not linger until it builds its Client.

The managed worker (`python -m trqat.worker`, or its stand-in under a fork server) is left out: it watches its controller itself from
the start and exits with its own code and message (worker.py, "the trqat controller ... is gone").
Otherwise only where the controller is the parent (`trqat run -- python train.py`, the managed worker): a
process started through a launcher (a shell, torchrun) has another parent and is left alone, as is
any process on another system. SIGTERM, not SIGKILL: a script's own handler may still save.
"""
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def follow_controller() -> bool:
    """Arms the parent-death signal when the controller is this process's parent; True when armed."""
    pid = os.environ.get("TRQAT_CONTROLLER_PID", "")
    if not sys.platform.startswith("linux") or not pid.isdigit() or os.getppid() != int(pid) or _managed_worker():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the loaded libc: find_library would run ldconfig at import
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != int(pid):  # the controller died before the signal was armed: as if it came
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def _managed_worker() -> bool:
    """`python -m trqat.worker`, or its stand-in under a fork server (`-m trqat.forkserver run trqat.worker`)."""
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" in argv:
        module = argv[argv.index("-m") + 1:]
        return module[:1] == ["trqat.worker"] or module[:3] == ["trqat.forkserver", "run", "trqat.worker"]
    return False
