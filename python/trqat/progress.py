"""Progress of long phases that are otherwise silent: the worker's start-up ("ranks", "data",
"model", "checkpoint"), evaluating ("eval"), and the steps of `python -m trqat.export`.

Code that loops calls report(phase, done, total); whoever wants to hear it installs a sink (the
worker sends a `progress` message to its controller, docs/protocol.md). Like logging, nothing
happens without a sink. Reports are throttled: at most one per MIN_INTERVAL_S per phase, plus the
first and the last (done == total).
"""
import os
import time
from typing import Callable, Dict, Optional, Sequence

Sink = Callable[[str, int, Optional[int]], None]

MIN_INTERVAL_S = 1.0

_sink: Optional[Sink] = None
_last: Dict[str, float] = {}


def set_sink(sink: Optional[Sink]) -> None:
    """Where reports go (None: nowhere). Called from the thread that reports."""
    global _sink
    _sink = sink
    _last.clear()


def report(phase: str, done: int, total: Optional[int] = None) -> None:
    if _sink is None:
        return
    now = time.monotonic()
    final = total is not None and done >= total
    if not final and phase in _last and now - _last[phase] < MIN_INTERVAL_S:
        return
    _last[phase] = now
    _sink(phase, int(done), None if total is None else int(total))
    if final:
        del _last[phase]  # the next run of this phase reports its start again


_phase_started: Dict[str, float] = {}


def phase(name: str) -> None:
    """A phase that is one long operation (building the model): announced once, nothing counted.
    Its start is kept, so phase_seconds() can say what it took."""
    _phase_started[name] = time.monotonic()
    report(name, 0, None)


def phase_seconds() -> Dict[str, float]:
    """Seconds from each phase's start to the next one's (the last: to now), in order."""
    names = sorted(_phase_started, key=_phase_started.__getitem__)
    ends = [_phase_started[n] for n in names[1:]] + [time.monotonic()]
    return {n: round(end - _phase_started[n], 3) for n, end in zip(names, ends)}


class FolderScan:
    """is_valid_file for torchvision's ImageFolder that reports the class folders scanned so far.

    ImageFolder walks the class folders of `root` in sorted order and asks about every file;
    `offset` counts the folders of splits scanned before this one, `total` those of every split.
    Files are accepted as ImageFolder would by itself (its image extensions).
    """

    def __init__(self, root: str, classes: Sequence[str], offset: int, total: int):
        from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
        self.prefix = os.path.join(os.path.expanduser(root), "")
        self.index = {c: i for i, c in enumerate(classes)}
        self.offset, self.total = offset, total
        self.accept = lambda path: has_file_allowed_extension(path, IMG_EXTENSIONS)

    def __call__(self, path: str) -> bool:
        if path.startswith(self.prefix):  # the class folder is the first part below root
            report("data", self.offset + self.index.get(path[len(self.prefix):].split(os.sep, 1)[0], 0), self.total)
        return self.accept(path)
