import os

import pytest
import torch

from conftest import make_config
from trqat.checkpoint import CheckpointProblem
from trqat.trainer import Trainer

CPU = torch.device("cpu")


def run_steps(trainer, start, end, lr=0.05):
    """The protocol's step order; returns the counts of every step. The LRs change every step, as
    the controller's do (a resumed trainer must apply them, not the LRs stored in its checkpoint)."""
    counts = []
    for t in range(start, end):
        counts.append(trainer.count_transitions())
        trainer.forward_backward(t)
        trainer.set_lrs(lr * (1 + 0.2 * t), lr * (1 - 0.05 * t))
        trainer.optimizer_step()
    return counts


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_training_lowers_the_loss(config):
    trainer = Trainer(make_config(**{"data.augment": False}), CPU)
    losses = []
    for t in range(24):
        trainer.forward_backward(t)
        trainer.set_lrs(0.05, 0.05)
        trainer.optimizer_step()
        stats = trainer.take_stats()
        losses.append(stats["loss"])
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    assert stats["samples"] == 16 and 0 <= stats["correct"] <= 16 and trainer.step == 24
    assert trainer.take_stats() is None  # taken once


def test_parameter_groups_and_frozen_scales_under_tr(config):
    trainer = Trainer(config, CPU)
    groups = trainer.optimizer.param_groups
    n = len(trainer.layers)
    assert [g["name"] for g in groups] == [name for name, _ in trainer.layers] + ["fp_weights", "no_decay"]
    assert [g["trqat_role"] for g in groups] == ["quant"] * n + ["other", "other"]
    assert [g["trqat_layer"] for g in groups[:n]] == list(range(n))
    assert [g["params"] for g in groups[:n]] == [[m.weight] for _, m in trainer.layers]
    groups = [{"params": [p for g in groups[:n] for p in g["params"]], "weight_decay": groups[0]["weight_decay"]}] + groups[n:]
    assert {id(p) for p in groups[1]["params"]} == {id(trainer.model.conv1.weight), id(trainer.model.fc.weight)}
    assert groups[0]["weight_decay"] == groups[1]["weight_decay"] == 5e-4 and groups[2]["weight_decay"] == 0
    scales = [m.weight_scale for _, m in trainer.layers]
    assert all(not s.requires_grad for s in scales)
    in_opt = {id(p) for g in groups for p in g["params"]}
    assert not in_opt & {id(s) for s in scales}
    before = [s.clone() for s in scales]
    run_steps(trainer, 0, 2)
    assert all(torch.equal(a, b) for a, b in zip(before, scales))
    act_scales = {id(m.act_scale) for _, m in trainer.layers}
    assert act_scales <= {id(p) for p in groups[2]["params"]}


def test_weight_scales_train_under_baseline():
    trainer = Trainer(make_config(mode="baseline"), CPU)
    scales = [m.weight_scale for _, m in trainer.layers]
    assert {id(s) for s in scales} <= {id(p) for p in trainer.optimizer.param_groups[-1]["params"]}
    before = [s.detach().clone() for s in scales]
    run_steps(trainer, 0, 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, scales))


def test_set_lrs_targets_the_groups(config):
    trainer = Trainer(config, CPU)
    trainer.set_lrs(0.3, 0.02)
    n = len(trainer.layers)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.3] * n + [0.02, 0.02]
    per_layer = [0.01 * (i + 1) for i in range(n)]
    trainer.set_lrs(per_layer, 0.5)
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert [lrs[name] for name, _ in trainer.layers] == per_layer
    assert lrs["fp_weights"] == lrs["no_decay"] == 0.5
    with pytest.raises(ValueError, match=f"lr_quant has 3 entries but the model has {n} quantized layers"):
        trainer.set_lrs([0.1, 0.2, 0.3], 0.5)


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_adam_variants_build_and_step(opt):
    trainer = Trainer(make_config(**{"optimizer.name": opt, "optimizer.lr": 1e-3}), CPU)
    assert type(trainer.optimizer).__name__ == {"adam": "Adam", "adamw": "AdamW"}[opt]
    run_steps(trainer, 0, 1, lr=1e-3)


def test_zero_lr_for_quantized_weights_means_no_transitions(config):
    trainer = Trainer(config, CPU)
    counts = []
    for t in range(3):
        counts.append(trainer.count_transitions())
        trainer.forward_backward(t)
        trainer.set_lrs(0.0, 0.05)
        trainer.optimizer_step()
    assert counts[0] is None and counts[1:] == [[0] * len(trainer.layers)] * 2


def test_evaluate_changes_nothing(config):
    trainer = Trainer(config, CPU)
    run_steps(trainer, 0, 2)
    state, prev = weights(trainer), [p.clone() for p in trainer.counter.prev]
    rng = torch.get_rng_state()
    result = trainer.evaluate()
    assert result["samples"] == 48 and 0 <= result["top1"] <= 100 and result["loss"] > 0
    assert trainer.model.training
    after = weights(trainer)
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(torch.equal(a, b) for a, b in zip(prev, trainer.counter.prev))
    assert torch.equal(rng, torch.get_rng_state())
    assert trainer.evaluate() == result


def test_exact_resume(tmp_path, config):
    straight = Trainer(config, CPU)
    counts_straight = run_steps(straight, 0, 6)

    first = Trainer(config, CPU)
    counts_resumed = run_steps(first, 0, 3)
    first.save(str(tmp_path / "ckpt"))
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["worker.pt"]  # no temporary file left
    torch.manual_seed(123)  # a different global RNG state must not matter
    second = Trainer(make_config(seed=0), CPU)
    assert second.load(str(tmp_path / "ckpt")) == 3
    counts_resumed += run_steps(second, 3, 6)

    assert counts_straight[0] is None and counts_resumed == counts_straight
    a, b = weights(straight), weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)


def test_missing_and_corrupt_checkpoints(tmp_path, config):
    trainer = Trainer(config, CPU)
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {tmp_path}/worker.pt"):
        trainer.load(str(tmp_path))
    (tmp_path / "worker.pt").write_bytes(b"not a checkpoint")
    # CheckpointProblem: the controller names the checkpoint's folder and falls back to an earlier one.
    with pytest.raises(CheckpointProblem, match="worker.pt is unreadable or corrupt"):
        trainer.load(str(tmp_path))
    from trqat import safe_io
    safe_io.save({"format": 99}, str(tmp_path / "worker.pt"))
    with pytest.raises(CheckpointProblem, match="has format 99; this trqat reads format 2"):
        trainer.load(str(tmp_path))
    other = Trainer(make_config(**{"quant.weight_bits": 3}), CPU)
    other.save(str(tmp_path / "b"))
    with pytest.raises(RuntimeError, match="does not match this run"):
        Trainer(make_config(**{"model.num_classes": 5, "data.synthetic.num_classes": 5}), CPU).load(str(tmp_path / "b"))


def test_data_errors_name_the_path(tmp_path):
    cfg = make_config(**{"data.name": "fashion-mnist", "data.root": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match=f"expected train-images-idx3-ubyte\\(.gz\\) in {tmp_path} \\(set data.root\\)"):
        Trainer(cfg, CPU)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX ubyte file with 3 dimension"):
        Trainer(cfg, CPU)


def test_batches_depend_on_the_step_only(config):
    a = Trainer(config, CPU).data
    b = Trainer(config, CPU).data
    for t in (5, 0, 9, 4):  # any order, epochs 0..2
        xa, ya = a.train_batch(t)
        xb, yb = b.train_batch(t)
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.shape == (16, 1, 12, 12)
    assert not torch.equal(a.train_batch(0)[0], a.train_batch(4)[0])  # same position, next epoch
    epoch = torch.cat([a.train_batch(t)[1] for t in range(4)])
    assert sorted(epoch.tolist()) == sorted(a.train.labels.tolist())  # one permutation per epoch


def test_augment_crops_and_flips():
    from trqat.data import augment
    images = torch.arange(2 * 25, dtype=torch.uint8).view(2, 1, 5, 5) + 1
    out = augment(images.repeat(512, 1, 1, 1), torch.Generator().manual_seed(0))
    assert out.shape == (1024, 1, 5, 5)
    flipped = images[0].flip(-1)
    assert any(torch.equal(o, flipped) for o in out[::2])  # centred crop with a flip
    assert (out == 0).any()  # zero padding shows up in shifted crops


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="no Fashion-MNIST here")
def test_fashion_mnist_loader():
    from trqat.data import load_fashion_mnist
    train, test = load_fashion_mnist("/usr/share/datasets/fashion-mnist")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 10000 and set(test.labels.unique().tolist()) == set(range(10))


def test_frozen_quantized_layers_are_refused(config):
    from trqat.models import build_model
    from trqat.groups import param_groups
    model = build_model(config)
    model.layers[0].conv1.weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"quantized layers with frozen weights \(requires_grad=False\): layers\.0\.conv1; keep them in full precision"):
        param_groups(model, 0.0, 0.0)


def test_checkpoints_load_without_running_code(tmp_path, config):
    """worker.pt holds only tensors, numbers and strings: torch.load(weights_only=True) reads it."""
    from trqat import safe_io
    trainer = Trainer(config, CPU)
    run_steps(trainer, 0, 2)
    trainer.save(str(tmp_path))
    raw = torch.load(str(tmp_path / "worker.pt"), weights_only=True)
    assert raw["format"] == safe_io.FORMAT and all(isinstance(t, torch.Tensor) for t in raw["tensors"])
    state = safe_io.load(str(tmp_path / "worker.pt"))
    assert state["step"] == 2 and state["world_size"] == 1 and len(state["rng"]) == 1


def test_rank_shares_make_up_the_global_batch(config):
    """Two ranks see the two halves of the single-process batch, augmented identically."""
    from trqat.distributed import Ranks
    whole = Trainer(config, CPU).data
    halves = [Trainer(config, CPU, Ranks(r, 2, r)).data for r in (0, 1)]
    for t in (0, 3, 7):
        x, y = whole.train_batch(t)
        parts = [h.train_batch(t) for h in halves]
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
    seen = [torch.cat([y for _, y in h.test_batches()]) for h in halves]
    assert sum(len(s) for s in seen) == len(whole.test)  # every test sample once across ranks
    assert sorted(torch.cat(seen).tolist()) == sorted(whole.test.labels.tolist())


def test_accumulated_micro_batches_give_the_same_step():
    """train.accumulate_steps: the gradient of the whole batch, in pieces. Checked on a model without
    batch statistics (DeiT: LayerNorm) and with full-precision activations (their scales would be
    initialised from the first micro-batch instead of the whole batch)."""
    base = {"data.augment": False, "model.name": "deit_tiny", "model.image_size": 12, "data.batch_size": 8,
            "quant.act_bits": 32}
    one, four = Trainer(make_config(**base), CPU), Trainer(make_config(**base, **{"train.accumulate_steps": 4}), CPU)
    for t in range(2):
        for trainer in (one, four):
            trainer.forward_backward(t)
            trainer.set_lrs(0.01, 0.01)
            trainer.optimizer_step()
        a, b = one.take_stats(), four.take_stats()
        assert a["samples"] == b["samples"] == 8 and a["correct"] == b["correct"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    wa, wb = weights(one), weights(four)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_the_report_goes_out_once_between_the_first_forward_and_its_backward(accumulate):
    """The worker sends the step's report from `after_forward`: the controller decides while backward
    runs. Once a step, before any gradient exists, whatever the number of micro-batches."""
    trainer = Trainer(make_config(**{"data.augment": False, "data.batch_size": 6, "train.accumulate_steps": accumulate}), CPU)
    calls = []
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    for t in range(2):
        report = trainer.begin_step()
        trainer.forward_backward(t, after_forward=lambda: calls.append((t, report.result(), [p.grad for p in params])))
        trainer.set_lrs(0.05, 0.05)
        trainer.optimizer_step()
    assert [c[0] for c in calls] == [0, 1]
    assert all(g is None for _, _, grads in calls for g in grads)  # zeroed with set_to_none, no backward yet
    assert calls[0][1][0] is None and len(calls[1][1][0]) == len(trainer.layers)
    assert calls[1][1][1]["samples"] == 6  # the statistics of step 0
    assert all(p.grad is not None for p in params)  # the backward ran after the report
