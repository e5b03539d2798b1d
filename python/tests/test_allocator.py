"""trqat.allocator: a training step's memory is reused instead of handed back and faulted in again."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# A step that allocates 40 one-MiB tensors and frees them at its end, as activations are; prints the
# minor page faults per step after a warm-up step.
PROGRAM = """
import resource, torch
from trqat.allocator import tune_malloc
print(tune_malloc())
torch.set_num_threads(1)
def step():
    xs = [torch.ones(256 * 1024) for _ in range(40)]
    return sum(float(x[0]) for x in xs)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


def run(program: str = PROGRAM, **env: str) -> tuple:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "TRQAT_MALLOC_TUNING")}
    out = subprocess.run([sys.executable, "-c", program], env={**clean, **env}, capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", float(out[1]) if len(out) > 1 else None


def test_tuned_steps_fault_far_less_than_glibcs_defaults():
    tuned, tuned_faults = run()
    untuned, default_faults = run(TRQAT_MALLOC_TUNING="0")
    assert tuned and not untuned
    # 40 MiB a step is 10,240 pages: by default glibc hands part of them back every step
    assert default_faults > 3 * tuned_faults, (default_faults, tuned_faults)


# Only tune_malloc's answer: the steps under a 64 KiB mmap threshold would take ~20 s of the suite.
TUNE_ONLY = "from trqat.allocator import tune_malloc; print(tune_malloc())"


def test_the_users_own_malloc_settings_are_left_alone():
    assert run(TUNE_ONLY)[0] is True  # the same check tunes when the user chose nothing
    assert run(TUNE_ONLY, MALLOC_TRIM_THRESHOLD_="1000000")[0] is False
    assert run(TUNE_ONLY, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")[0] is False
