"""Dataset loaders on small generated files in the real formats, and their errors."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from conftest import make_config
from trqat.data import CIFAR10_MEAN, CIFAR10_STD, build_data
from trqat.trainer import Trainer

CPU = torch.device("cpu")

try:
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None


def _batch(rng, n, label_key, classes):
    d = {b"batch_label": b"x", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         label_key: [int(v) for v in rng.integers(0, classes, n)], b"filenames": [b"f"] * n}
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [0] * n
    return d


def write_cifar(tmp_path, name, archive=True, per_file=4):
    """A tiny CIFAR python-version dataset; returns (path, {member: dict})."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, tar_name, key, classes = "cifar-10-batches-py", "cifar-10-python.tar.gz", b"labels", 10
        members = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    else:
        folder, tar_name, key, classes = "cifar-100-python", "cifar-100-python.tar.gz", b"fine_labels", 100
        members = ["train", "test"]
    content = {m: _batch(rng, per_file, key, classes) for m in members}
    if archive:
        path = tmp_path / tar_name
        with tarfile.open(path, "w:gz") as tar:
            for m, d in content.items():
                raw = pickle.dumps(d, protocol=2)
                info = tarfile.TarInfo(f"{folder}/{m}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        path = tmp_path / folder
        path.mkdir()
        for m, d in content.items():
            (path / m).write_bytes(pickle.dumps(d, protocol=2))
    return path, content


def cifar_config(name, root, **extra):
    return make_config(**{"data.name": name, "data.root": str(root), "data.batch_size": 4,
                          "data.eval_batch_size": 3, **extra})["data"]


def test_cifar10_archive_and_folder(tmp_path):
    path, content = write_cifar(tmp_path, "cifar10")
    expected = np.concatenate([content[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    labels = sum((content[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    for root in (tmp_path, path):  # the folder holding the archive, or the archive itself
        data = build_data(cifar_config("cifar10", root), 0, CPU)
        assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (20, 3, 32, 32)
        assert np.array_equal(data.train.images.numpy(), expected) and data.train.labels.tolist() == labels
        assert len(data.test) == 4 and data.test.labels.tolist() == content["test_batch"][b"labels"]
        assert data.pad == 4 and data.num_classes == 10 and data.steps_per_epoch == 5
    folder_root = tmp_path / "extracted"
    folder_root.mkdir()
    write_cifar(folder_root, "cifar10", archive=False)
    for root in (folder_root, folder_root / "cifar-10-batches-py"):
        data = build_data(cifar_config("cifar10", root, **{"data.augment": False}), 0, CPU)
        assert np.array_equal(data.train.images.numpy(), expected)
    x, y = data.train_batch(0)  # normalized with the CIFAR-10 channel statistics
    raw = data.train.images.float() / 255
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    normalized = (raw - mean) / std
    assert x.shape == (4, 3, 32, 32)
    assert any(torch.allclose(x[0], normalized[i]) for i in range(20))
    test_x = torch.cat([b[0] for b in data.test_batches()])
    torch.testing.assert_close(test_x, (data.test.images.float() / 255 - mean) / std)


def test_cifar100_fine_labels_and_training(tmp_path):
    _, content = write_cifar(tmp_path, "cifar100", per_file=8)
    data = build_data(cifar_config("cifar100", tmp_path), 0, CPU)
    assert data.train.labels.tolist() == content["train"][b"fine_labels"] and data.num_classes == 100
    assert len(data.test) == 8
    cfg = make_config(**{"data.name": "cifar100", "data.root": str(tmp_path), "data.batch_size": 4,
                         "model.in_channels": 3, "model.num_classes": 100, "model.image_size": 32})
    trainer = Trainer(cfg, CPU)
    trainer.forward_backward(0)
    trainer.set_lrs(0.05, 0.05)
    trainer.optimizer_step()
    assert trainer.take_stats()["samples"] == 4
    with pytest.raises(ValueError, match="data.name 'cifar100' has 100 classes but model.num_classes is 10"):
        Trainer(make_config(**{"data.name": "cifar100", "data.root": str(tmp_path), "data.batch_size": 4,
                               "model.in_channels": 3, "model.num_classes": 10}), CPU)


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"CIFAR-10: expected cifar-10-python.tar.gz or a folder "
                                                f"cifar-10-batches-py in {tmp_path} \\(set data.root\\)"):
        build_data(cifar_config("cifar10", tmp_path), 0, CPU)
    with pytest.raises(FileNotFoundError, match="CIFAR-100: expected cifar-100-python.tar.gz or a folder cifar-100-python"):
        build_data(cifar_config("cifar100", tmp_path / "missing"), 0, CPU)
    path, _ = write_cifar(tmp_path, "cifar100", archive=False)
    (path / "test").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="CIFAR-100: test in .* lacks the keys b'data' and b'fine_labels'"):
        build_data(cifar_config("cifar100", tmp_path), 0, CPU)
    (path / "test").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}))
    with pytest.raises(ValueError, match="holds data of shape \\(2, 100\\) and 2 labels"):
        build_data(cifar_config("cifar100", tmp_path), 0, CPU)
    (path / "test").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="is not a CIFAR python pickle"):
        build_data(cifar_config("cifar100", tmp_path), 0, CPU)
    bad = tmp_path / "c10"
    bad.mkdir()
    (bad / "cifar-10-python.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz is not a readable tar archive"):
        build_data(cifar_config("cifar10", bad), 0, CPU)


def write_image_folder(root, classes=("ant", "bee"), train_per_class=3, val_per_class=1):
    rng = np.random.default_rng(1)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (20 + 2 * i, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"img{i}.png")


def imagenet_config(root, **extra):
    return make_config(**{"data.name": "imagenet", "data.root": str(root), "data.batch_size": 2,
                          "data.eval_batch_size": 1, "data.image_size": 16, **extra})["data"]


@pytest.mark.skipif(Image is None, reason="PIL is not installed")
def test_imagenet_folder_batches_are_determined_by_the_step(tmp_path):
    write_image_folder(tmp_path)
    data = build_data(imagenet_config(tmp_path), 0, CPU)
    assert len(data.train) == 6 and len(data.test) == 2 and data.steps_per_epoch == 3 and data.num_classes == 2
    seq = [data.train_batch(t) for t in range(5)]  # crosses into epoch 1
    for x, y in seq:
        assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    epoch0 = sorted(sum((y.tolist() for _, y in seq[:3]), []))
    assert epoch0 == [0, 0, 0, 1, 1, 1]
    fresh = build_data(imagenet_config(tmp_path), 0, CPU)  # random access, as after a resume
    for t in (4, 1):
        x, y = fresh.train_batch(t)
        assert torch.equal(x, seq[t][0]) and torch.equal(y, seq[t][1])
    workers = build_data(imagenet_config(tmp_path, **{"data.num_workers": 1}), 0, CPU)
    x, y = workers.train_batch(1)  # augmentation seeded per sample: same in a worker process
    assert torch.equal(x, seq[1][0]) and torch.equal(y, seq[1][1])
    test = list(data.test_batches())
    assert [b[0].shape for b in test] == [(1, 3, 16, 16)] * 2 and [b[1].item() for b in test] == [0, 1]
    other_seed = build_data(imagenet_config(tmp_path), 1, CPU)
    assert not all(torch.equal(other_seed.train_batch(t)[0], seq[t][0]) for t in range(3))
    no_aug = build_data(imagenet_config(tmp_path, **{"data.augment": False}), 0, CPU)
    assert no_aug.train_batch(0)[0].shape == (2, 3, 16, 16)


@pytest.mark.skipif(Image is None, reason="PIL is not installed")
def test_imagenet_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"ImageNet: expected class folders in {tmp_path}/train"):
        build_data(imagenet_config(tmp_path), 0, CPU)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=f"ImageNet: expected class folders in {tmp_path}/train, found none"):
        build_data(imagenet_config(tmp_path), 0, CPU)
    os.rmdir(tmp_path / "train")
    write_image_folder(tmp_path)
    (tmp_path / "val" / "cat").mkdir()
    with pytest.raises(ValueError, match="ImageNet: the class folders of .*train \\(2\\) and .*val \\(3\\) differ, e.g. cat"):
        build_data(imagenet_config(tmp_path), 0, CPU)
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="ImageNet: .*cat.* \\(expected image files in the class folders"):
        build_data(imagenet_config(tmp_path), 0, CPU)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data.name 'mnist'; available: fashion-mnist, cifar10, cifar100, imagenet, synthetic"):
        build_data(make_config(**{"data.name": "mnist"})["data"], 0, CPU)


def _write_idx(path, array):
    """An IDX ubyte file: magic 0x0000080N, the dimensions, the bytes."""
    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fixed_shape_datasets_are_checked_against_their_shape(tmp_path):
    """DATASETS holds the shapes the controller resolves the model from: files of another shape are refused."""
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (4, 32, 32)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, 4))
    config = make_config(**{"data.name": "fashion-mnist", "data.root": str(tmp_path), "data.batch_size": 2})["data"]
    with pytest.raises(ValueError, match=r"fashion-mnist: the images in .* are \[1, 32, 32\] .*expected \[1, 28, 28\]"):
        build_data(config, 0, CPU)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.array([0, 3, 12, 1]))
    with pytest.raises(ValueError, match=r"fashion-mnist: the labels in .* span 0..12, expected 0..9"):
        build_data(config, 0, CPU)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 3, 9, 1]))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 3, 9, 1]))
    assert build_data(config, 0, CPU).num_classes == 10
