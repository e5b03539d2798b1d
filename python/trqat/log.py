"""The `trqat` logger. The library only logs; the worker (an entry point) sends it to stderr, and a
user's script decides for itself (logging.basicConfig, or its own handlers)."""
import logging
import os
import sys
import warnings
from typing import Type

logger = logging.getLogger("trqat")


def to_stderr(prefix: str) -> None:
    """Entry points: every trqat record on stderr as one plain line, `prefix: message`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_dir(name: str) -> str:
    module = sys.modules.get(name)
    return os.path.dirname(os.path.abspath(module.__file__)) if module is not None and module.__file__ else ""


def warn_user(message: str, category: Type[Warning] = UserWarning, past_torch: bool = False) -> None:
    """warnings.warn pointing at the first frame outside the trqat package: the user's line, however
    deep inside trqat the misuse is found (a fixed stacklevel breaks when the call path changes).
    past_torch: outside torch too, for what a module hook finds (torch's __call__ and containers
    would be blamed otherwise)."""
    skipped = tuple(d + os.sep for d in (_PACKAGE_DIR, _package_dir("torch") if past_torch else "") if d)
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skipped):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=level + 1 if frame is not None else 2)
