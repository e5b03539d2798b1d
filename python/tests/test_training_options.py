"""Optimizers by name, per-layer LRs, weight decays, grad clipping, label smoothing, distillation,
init_checkpoint."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_config
from trqat.models import build_model, resnet20
from trqat.quant import quantized_layers
from trqat.trainer import Trainer, distillation_loss

CPU = torch.device("cpu")


def one_step(trainer, t=0, lr=0.05):
    trainer.forward_backward(t)
    trainer.set_lrs(lr, lr)
    trainer.optimizer_step()


@pytest.mark.parametrize("name, kwargs, cls, check", [
    ("sgd", {"dampening": 0.1}, "SGD", {"momentum": 0.9, "dampening": 0.1}),
    ("Adam", {"amsgrad": True}, "Adam", {"betas": (0.9, 0.999), "amsgrad": True}),
    ("adamw", {}, "AdamW", {"eps": 1e-8}),
    ("nadam", {"momentum_decay": 0.002}, "NAdam", {"momentum_decay": 0.002}),
    ("RMSprop", {"alpha": 0.9, "momentum": 0.5}, "RMSprop", {"alpha": 0.9, "momentum": 0.5}),
    ("adagrad", {}, "Adagrad", {}),
])
def test_optimizers_by_name_with_kwargs(name, kwargs, cls, check):
    cfg = make_config(**{"optimizer.name": name, "optimizer.lr": 1e-3, "optimizer.kwargs": kwargs})
    trainer = Trainer(cfg, CPU)
    opt = trainer.optimizer
    assert type(opt).__name__ == cls
    for key, value in check.items():
        assert opt.defaults[key] == value
    before = trainer.layers[0][1].weight.detach().clone()
    one_step(trainer, lr=1e-3)
    assert not torch.equal(before, trainer.layers[0][1].weight)


def test_optimizer_errors():
    with pytest.raises(ValueError, match="unknown optimizer.name 'adamz'; available: .*adam, adamax, adamw.*rmsprop.*sgd"):
        Trainer(make_config(**{"optimizer.name": "adamz"}), CPU)
    with pytest.raises(ValueError, match="optimizer NAdam \\('nadam'\\) does not accept the keyword argument 'momentum'"):
        Trainer(make_config(**{"optimizer.name": "nadam", "optimizer.kwargs": {"momentum": 0.9}}), CPU)
    with pytest.raises(ValueError, match="optimizer RMSprop \\('rmsprop'\\) rejected its arguments .*alpha=-1"):
        Trainer(make_config(**{"optimizer.name": "rmsprop", "optimizer.kwargs": {"alpha": -1}}), CPU)


def test_weight_decays_per_group():
    trainer = Trainer(make_config(**{"optimizer.quantized_weight_decay": 1e-3}), CPU)
    decays = {g["name"]: g["weight_decay"] for g in trainer.optimizer.param_groups}
    assert all(decays[n] == 1e-3 for n, _ in trainer.layers)
    assert decays["fp_weights"] == 5e-4 and decays["no_decay"] == 0
    override = Trainer(make_config(**{"optimizer.kwargs": {"weight_decay": 0.1}}), CPU)
    assert {g["weight_decay"] for g in override.optimizer.param_groups} == {0.1, 0.0}


def test_per_layer_lrs_reach_their_layers():
    trainer = Trainer(make_config(**{"optimizer.momentum": 0.0, "optimizer.weight_decay": 0.0,
                                     "optimizer.quantized_weight_decay": 0.0}), CPU)
    n = len(trainer.layers)
    lrs = [0.0] * n
    lrs[3] = 0.1
    before = [m.weight.detach().clone() for _, m in trainer.layers]
    trainer.forward_backward(0)
    grads = [m.weight.grad.clone() for _, m in trainer.layers]
    trainer.set_lrs(lrs, 0.0)
    trainer.optimizer_step()
    for i, (_, m) in enumerate(trainer.layers):
        torch.testing.assert_close(m.weight.detach(), before[i] - lrs[i] * grads[i])
    assert not torch.equal(before[3], trainer.layers[3][1].weight)


def test_grad_clip_bounds_the_global_norm():
    trainer = Trainer(make_config(**{"train.grad_clip": 0.01}), CPU)
    one_step(trainer)
    params = [p for g in trainer.optimizer.param_groups for p in g["params"] if p.grad is not None]
    norm = torch.norm(torch.stack([p.grad.norm() for p in params])).item()
    assert trainer.last_grad_norm.item() > 0.01  # it did clip
    assert norm <= 0.01 * (1 + 1e-4)
    free = Trainer(make_config(), CPU)
    one_step(free)
    params = [p for g in free.optimizer.param_groups for p in g["params"] if p.grad is not None]
    assert torch.norm(torch.stack([p.grad.norm() for p in params])).item() > 0.01


def test_label_smoothing_changes_the_loss():
    plain = Trainer(make_config(), CPU)
    smooth = Trainer(make_config(**{"train.label_smoothing": 0.2}), CPU)
    plain.forward_backward(0)
    smooth.forward_backward(0)
    x, y = smooth.data.train_batch(0)
    logits = smooth.model(x).detach()  # same batch statistics, same activation scales
    logp = F.log_softmax(logits, 1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    expected = (0.8 * nll + 0.2 * -logp.mean(1)).mean().item()
    assert smooth.take_stats()["loss"] == pytest.approx(expected, rel=1e-5)
    assert plain.take_stats()["loss"] == pytest.approx(nll.mean().item(), rel=1e-5)


def _save_fp_resnet20(path, num_classes=4, seed=7):
    torch.manual_seed(seed)
    model = resnet20(1, num_classes)
    torch.save(model.state_dict(), str(path))
    return model


@pytest.mark.parametrize("alpha, temperature", [(1.0, 1.0), (0.3, 4.0)])
def test_distillation_loss_matches_an_independent_computation(tmp_path, alpha, temperature):
    teacher_ref = _save_fp_resnet20(tmp_path / "teacher.pt").eval()
    cfg = make_config(**{"train.distill.teacher_checkpoint": str(tmp_path / "teacher.pt"),  # teacher_model: model.name
                         "train.distill.temperature": temperature, "train.distill.alpha": alpha})
    trainer = Trainer(cfg, CPU)
    assert not trainer.teacher.training
    teacher_params = {id(p) for p in trainer.teacher.parameters()}
    assert not teacher_params & {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    trainer.forward_backward(0)
    x, y = trainer.data.train_batch(0)
    with torch.no_grad():
        s, t = trainer.model(x), teacher_ref(x)
    kl = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    expected = (1 - alpha) * F.cross_entropy(s, y) + alpha * temperature**2 * kl
    assert trainer.take_stats()["loss"] == pytest.approx(expected.item(), rel=1e-4)
    torch.testing.assert_close(distillation_loss(s, t, y, temperature, alpha), expected)
    state = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    trainer.set_lrs(0.05, 0.05)
    trainer.optimizer_step()
    assert all(torch.equal(v, trainer.teacher.state_dict()[k]) for k, v in state.items())


def test_distillation_teacher_must_match(tmp_path):
    _save_fp_resnet20(tmp_path / "teacher.pt")
    cfg = make_config(**{"train.distill.teacher_checkpoint": str(tmp_path / "teacher.pt"),
                         "train.distill.teacher_model": "reactnet18"})
    with pytest.raises(ValueError, match="train.distill.teacher_checkpoint: .* does not match model ReActNet18: missing keys"):
        Trainer(cfg, CPU)


def test_init_checkpoint_round_trip(tmp_path):
    fp = _save_fp_resnet20(tmp_path / "fp.pt")
    model = build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "fp.pt")}))
    ref = fp.state_dict()
    for name, m in quantized_layers(model):
        w = ref[name + ".weight"]
        assert torch.equal(m.weight.detach(), w)
        torch.testing.assert_close(m.weight_scale.detach(), 2 * 2 * w.abs().mean() / math.sqrt(1))
    assert torch.equal(model.fc.weight.detach(), ref["fc.weight"])
    assert torch.equal(model.bn1.running_var, ref["bn1.running_var"])

    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in ref.items()}}, str(tmp_path / "wrapped.pt"))
    wrapped = build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "wrapped.pt")}))
    assert torch.equal(wrapped.layers[2].conv1.weight, fp.layers[2].conv1.weight)
    for prefix in ("_orig_mod.module.", "module._orig_mod."):  # torch.compile and DDP, in either order
        torch.save({prefix + k: v for k, v in ref.items()}, str(tmp_path / "both.pt"))
        both = build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "both.pt")}))
        assert torch.equal(both.layers[2].conv1.weight, fp.layers[2].conv1.weight)

    trainer = Trainer(make_config(), CPU)  # a trqat worker.pt: its model state, quantizer keys dropped
    one_step(trainer)
    trainer.save(str(tmp_path / "ckpt"))
    again = build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "ckpt" / "worker.pt"),
                                       "quant.weight_bits": 3}))
    assert torch.equal(again.layers[5].conv2.weight, trainer.model.layers[5].conv2.weight)
    assert again.layers[5].conv2.weight_bits == 3


def test_init_checkpoint_errors(tmp_path):
    _save_fp_resnet20(tmp_path / "five.pt", num_classes=5)
    with pytest.raises(ValueError, match="model.init_checkpoint: .*five.pt does not match model CifarResNet: "
                                         "shape mismatches: fc.weight \\(5, 64\\) vs model \\(4, 64\\), fc.bias"):
        build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "five.pt")}))
    state = resnet20(1, 4).state_dict()
    del state["layers.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, str(tmp_path / "partial.pt"))
    with pytest.raises(ValueError, match="missing keys: layers.0.conv1.weight; unexpected keys: extra.weight"):
        build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "partial.pt")}))
    with pytest.raises(FileNotFoundError, match="model.init_checkpoint: no such file /nope.pt"):
        build_model(make_config(**{"model.init_checkpoint": "/nope.pt"}))
    torch.save([1, 2], str(tmp_path / "list.pt"))
    with pytest.raises(ValueError, match="holds no state dict"):
        build_model(make_config(**{"model.init_checkpoint": str(tmp_path / "list.pt")}))
