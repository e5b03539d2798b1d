"""quantize() refuses a model that DistributedDataParallel already wraps: DDP would keep the ranks in
step only for the parameters it was built with, and the quantizers' scales would drift apart."""
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from trqat.adapt import quantize


@pytest.fixture
def group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_quantize_refuses_a_ddp_wrapper_and_a_model_inside_one(group):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 3))
    ddp = nn.parallel.DistributedDataParallel(model)
    for target in (ddp, ddp.module, ddp.module[1]):
        with pytest.raises(ValueError, match="Quantize first, then wrap"):
            quantize(target)
    assert not any(type(m).__name__.startswith("Q") for m in model.modules())  # nothing changed


def test_quantize_then_wrap_is_fine(group):
    model = quantize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 3)))
    ddp = nn.parallel.DistributedDataParallel(model)
    ddp(torch.randn(2, 3, 12, 12)).sum().backward()
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 3))
    quantize(other)  # another model, not wrapped, in a process that has a DDP
