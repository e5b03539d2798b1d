"""The `trqat` logger. The library only logs; the worker (an entry point) sends it to stderr, and a
user's script decides for itself (logging.basicConfig, or its own handlers)."""
import logging
import sys

logger = logging.getLogger("trqat")


def to_stderr(prefix: str) -> None:
    """Entry points: every trqat record on stderr as one plain line, `prefix: message`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
