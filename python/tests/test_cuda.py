"""The CUDA paths of the worker: mixed precision, channels-last, torch.compile, and a step with no
host synchronisation but the transition counts, the counting as one CUDA graph. Run with `pytest -m cuda` on a GPU machine
(scripts/gpu-check.sh does); skipped without CUDA, which is every CI machine."""
import pytest
import torch

from conftest import make_config
from trqat import transitions
from trqat.trainer import Trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def gpu_config(**overrides):
    return make_config(**{"worker.device": "cuda", "data.augment": False, **overrides})


def steps(trainer, n):
    counts = []
    for t in range(trainer.step, trainer.step + n):
        report = trainer.begin_step()
        trainer.forward_backward(t)
        counts.append(report.result()[0])
        trainer.set_lrs(0.05, 0.05)
        trainer.optimizer_step()
    return counts


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_training_steps_on_cuda(amp):
    trainer = Trainer(gpu_config(**{"worker.amp": amp}), torch.device("cuda"))
    counts = steps(trainer, 4)
    assert counts[0] is None and all(len(c) == len(trainer.layers) for c in counts[1:])
    stats = trainer.take_stats()
    assert stats["samples"] == 16 and torch.isfinite(torch.tensor(stats["loss"]))
    assert trainer.evaluate()["samples"] == 48


def test_channels_last_gives_the_same_levels_as_contiguous():
    a = Trainer(gpu_config(), torch.device("cuda"))
    b = Trainer(gpu_config(**{"worker.channels_last": True}), torch.device("cuda"))
    for (_, ma), (_, mb) in zip(a.layers, b.layers):
        assert torch.equal(ma.weight_levels(), mb.weight_levels())
    steps(a, 2)
    steps(b, 2)


def test_the_counts_come_back_asynchronously_and_match_the_synchronous_count():
    trainer = Trainer(gpu_config(), torch.device("cuda"))
    steps(trainer, 2)
    prev = [p.clone() for p in trainer.counter.prev]
    report = trainer.begin_step()
    expected = [int((m.weight_levels() != p).sum()) for (_, m), p in zip(trainer.layers, prev)]
    assert report.result()[0] == expected


def test_a_step_does_not_synchronise_with_the_host():
    """forward, backward, the LRs and the optimizer step queue up without waiting for the GPU; only
    the counts' copy is waited for (an event, not a device synchronisation)."""
    if not hasattr(torch.cuda, "set_sync_debug_mode"):
        pytest.skip("torch.cuda.set_sync_debug_mode needs torch >= 1.10")
    trainer = Trainer(gpu_config(**{"worker.amp": "bf16"}), torch.device("cuda"))
    steps(trainer, 3)  # the first steps initialise the activation scales (one synchronisation each, once)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for t in range(3, 6):
            report = trainer.begin_step()
            trainer.forward_backward(t)
            trainer.set_lrs(0.05, 0.05)
            trainer.optimizer_step()
            report.result()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile needs torch >= 2")
def test_compiled_model_trains():
    trainer = Trainer(gpu_config(**{"worker.compile": True}), torch.device("cuda"))
    steps(trainer, 3)
    assert trainer.take_stats()["samples"] == 16


@pytest.mark.skipif(not transitions._THREAD_LOCAL_CAPTURE, reason="CUDA graphs for counting need torch >= 2.1")
@pytest.mark.parametrize("overrides", [{}, {"quant.weight_bits": 1, "quant.act_bits": 1}, {"worker.channels_last": True}])
def test_counting_is_one_cuda_graph_and_counts_as_the_eager_kernels(overrides):
    trainer = Trainer(gpu_config(**overrides), torch.device("cuda"))
    steps(trainer, 1)
    graph = trainer.counter.graph
    assert isinstance(graph, transitions.CountGraph)
    for _ in range(4):
        prev = [p.clone() for p in trainer.counter.prev]
        expected = [int((m.weight_levels() != p).sum()) for (_, m), p in zip(trainer.layers, prev)]
        report = trainer.begin_step()
        assert report.result()[0] == expected
        trainer.forward_backward(trainer.step)
        trainer.set_lrs(0.05, 0.05)
        trainer.optimizer_step()
    assert trainer.counter.graph is graph and not graph.failed
