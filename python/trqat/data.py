"""In-memory datasets (Fashion-MNIST IDX files, or a synthetic set) and step-indexed batches.

The batch of global step t depends on (seed, t) only, so a resumed run sees exactly the batches
an uninterrupted run would.
"""
import gzip
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics (also used for synthetic data)
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # ubyte images (3 dims), ubyte labels (1 dim)
_PERM, _AUG = 0, 1  # stream tags for seed_for


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> "Split":
        return Split(self.images[:n], self.labels[:n])


def seed_for(*ints: int) -> int:
    """A 64-bit seed mixing several ints (run seed, stream tag, epoch or step)."""
    return int(np.random.SeedSequence(list(ints)).generate_state(1, np.uint64)[0])


def _generator(*ints: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(*ints))


def load_idx(path: str, ndim: int) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (.gz or plain) with `ndim` dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"Fashion-MNIST: cannot read {path}: {e}") from e
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != _IDX_MAGIC[ndim]:
        got = "a short file" if magic is None else f"magic 0x{magic:08x}"
        raise ValueError(f"Fashion-MNIST: {path} is not an IDX ubyte file with {ndim} dimension(s) "
                         f"(expected magic 0x{_IDX_MAGIC[ndim]:08x}, got {got})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise ValueError(f"Fashion-MNIST: {path} holds {len(raw) - header} data bytes, "
                         f"its header {dims} says {int(np.prod(dims))}")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy())


def _idx_path(root: str, name: str) -> str:
    for candidate in (os.path.join(root, name + ".gz"), os.path.join(root, name)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"Fashion-MNIST: expected {name}(.gz) in {root} (set data.root)")


def load_fashion_mnist(root: str) -> Tuple[Split, Split]:
    """Train and test splits as uint8 images [N, 1, 28, 28] and int64 labels."""
    def split(prefix: str) -> Split:
        images = load_idx(_idx_path(root, f"{prefix}-images-idx3-ubyte"), 3)
        labels = load_idx(_idx_path(root, f"{prefix}-labels-idx1-ubyte"), 1)
        if len(images) != len(labels):
            raise ValueError(f"Fashion-MNIST: {prefix} has {len(images)} images but {len(labels)} labels in {root}")
        return Split(images.unsqueeze(1), labels.long())
    return split("train"), split("t10k")


def make_synthetic(seed: int, train_size: int, test_size: int, image_size: int = 28,
                   channels: int = 1, num_classes: int = 10) -> Tuple[Split, Split]:
    """Random images whose label is learnable: a smooth per-class pattern plus uniform noise."""
    g = _generator(seed, 2)
    protos = torch.rand(num_classes, channels, 7, 7, generator=g)
    protos = F.interpolate(protos, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def split(n: int) -> Split:
        labels = torch.randint(num_classes, (n,), generator=g)
        noise = torch.rand(n, channels, image_size, image_size, generator=g)
        images = (0.6 * protos[labels] + 0.4 * noise) * 255
        return Split(images.round().clamp(0, 255).to(torch.uint8), labels)
    return split(train_size), split(test_size)


def augment(images: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop with `pad` px of zero padding and random horizontal flip, per sample."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(2 * pad + 1, (n, 1), generator=g)
    dx = torch.randint(2 * pad + 1, (n, 1), generator=g)
    flip = torch.rand(n, 1, generator=g) < 0.5
    cols = torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w)) + dx  # [n, w]
    rows = torch.arange(h) + dy  # [n, h]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


class Data:
    """Training batches indexed by global step, and the test set in eval batches."""

    def __init__(self, train: Split, test: Split, batch_size: int, eval_batch_size: int,
                 seed: int, augment: bool, device: torch.device):
        if len(train) < batch_size:
            raise ValueError(f"training set has {len(train)} samples, fewer than one batch ({batch_size})")
        self.train, self.test = train, test
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.augment, self.device = seed, augment, device
        self.steps_per_epoch = len(train) // batch_size  # drop_last
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.device.type == "cuda":
            return (x.pin_memory().to(self.device, non_blocking=True),
                    y.pin_memory().to(self.device, non_blocking=True))
        return x, y

    def train_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The (normalized images, labels) of global step `step`, on the device."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm_epoch, self._perm = epoch, torch.randperm(len(self.train), generator=_generator(self.seed, _PERM, epoch))
        idx = self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]
        images = self.train.images[idx]
        if self.augment:
            images = augment(images, _generator(self.seed, _AUG, step))
        return self._to_device(normalize(images), self.train.labels[idx])

    def test_batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.test), self.eval_batch_size):
            sl = slice(i, i + self.eval_batch_size)
            yield self._to_device(normalize(self.test.images[sl]), self.test.labels[sl])


def build_data(cfg: Dict[str, Any], seed: int, device: torch.device) -> Data:
    """Data from the config's `data` section (fashion-mnist or synthetic, optional subsets)."""
    if cfg["name"] == "fashion-mnist":
        train, test = load_fashion_mnist(cfg["root"])
    elif cfg["name"] == "synthetic":
        train, test = make_synthetic(seed, **cfg["synthetic"])
    else:
        raise ValueError(f"unknown data.name {cfg['name']!r}; available: fashion-mnist, synthetic")
    if cfg.get("train_subset") is not None:
        train = train.head(cfg["train_subset"])
    if cfg.get("test_subset") is not None:
        test = test.head(cfg["test_subset"])
    return Data(train, test, cfg["batch_size"], cfg["eval_batch_size"], seed,
                cfg.get("augment", True), device)
