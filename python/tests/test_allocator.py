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


def run(**env: str) -> tuple:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "TRQAT_MALLOC_TUNING")}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env={**clean, **env}, capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", float(out[1])


def test_tuned_steps_fault_far_less_than_glibcs_defaults():
    tuned, tuned_faults = run()
    untuned, default_faults = run(TRQAT_MALLOC_TUNING="0")
    assert tuned and not untuned
    # 40 MiB a step is 10,240 pages: by default glibc hands part of them back every step
    assert default_faults > 3 * tuned_faults, (default_faults, tuned_faults)


def test_the_users_own_malloc_settings_are_left_alone():
    assert run(MALLOC_TRIM_THRESHOLD_="1000000")[0] is False
    assert run(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")[0] is False
