"""The dataset formats trqat reads itself, into uint8 tensors in memory (`Split`): Fashion-MNIST
(IDX files), CIFAR-10/100 (the python-version archive or its extracted folder), a synthetic set;
and ImageNet's class folders (decoded later, by a DataLoader). `DATASETS`: their names and fixed
shapes; the pixel statistics each is normalized with."""
import gzip
import os
import pickle
import tarfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .seeds import SYNTHETIC, generator

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics (also used for synthetic data)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # ubyte images (3 dims), ubyte labels (1 dim)


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> "Split":
        return Split(self.images[:n], self.labels[:n])


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


def make_synthetic(seed: int, train_size: int, test_size: int, image_size: int, channels: int,
                   num_classes: int) -> Tuple[Split, Split]:
    """Random images whose label is learnable: a smooth per-class pattern plus uniform noise."""
    g = generator(seed, SYNTHETIC)
    protos = torch.rand(num_classes, channels, 7, 7, generator=g)
    protos = F.interpolate(protos, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def split(n: int) -> Split:
        labels = torch.randint(num_classes, (n,), generator=g)
        noise = torch.rand(n, channels, image_size, image_size, generator=g)
        images = (0.6 * protos[labels] + 0.4 * noise) * 255
        return Split(images.round().clamp(0, 255).to(torch.uint8), labels)
    return split(train_size), split(test_size)


# --- CIFAR -------------------------------------------------------------------------------------
_CIFAR = {  # name: (label, archive, folder, train members, test members, label key, mean, std)
    "cifar10": ("CIFAR-10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels",
                CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ("CIFAR-100", "cifar-100-python.tar.gz", "cifar-100-python", ["train"], ["test"],
                 b"fine_labels", CIFAR100_MEAN, CIFAR100_STD),
}


def _cifar_split(label: str, where: str, blobs: List[Tuple[str, bytes]], label_key: bytes) -> Split:
    images, labels = [], []
    for name, raw in blobs:
        try:
            d = pickle.loads(raw, encoding="bytes")
        except Exception as e:
            raise ValueError(f"{label}: {name} in {where} is not a CIFAR python pickle: {e}") from e
        if not isinstance(d, dict) or b"data" not in d or label_key not in d:
            keys = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{label}: {name} in {where} lacks the keys b'data' and {label_key!r} (has {keys})")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        lab = np.asarray(d[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(lab) != len(data):
            raise ValueError(f"{label}: {name} in {where} holds data of shape {data.shape} and "
                             f"{len(lab)} labels (expected [N, 3072] and N labels)")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(lab.copy()))
    return Split(torch.cat(images), torch.cat(labels))


def load_cifar(name: str, root: str) -> Tuple[Split, Split]:
    """CIFAR-10/100 train and test splits as uint8 [N, 3, 32, 32] and int64 labels (fine labels for
    CIFAR-100). `root` is the archive itself, a folder holding the archive or the extracted
    folder, or the extracted folder itself."""
    label, archive, folder, train_members, test_members, key = _CIFAR[name][:6]
    members = train_members + test_members
    candidates = [root] if os.path.isfile(root) else [os.path.join(root, archive)]
    folders = [os.path.join(root, folder), root]
    tar_path = next((c for c in candidates if os.path.isfile(c)), None)
    dir_path = next((d for d in folders if os.path.isdir(d) and all(
        os.path.isfile(os.path.join(d, m)) for m in members)), None)
    blobs: Dict[str, bytes] = {}
    if dir_path is not None:
        where = dir_path
        for m in members:
            with open(os.path.join(dir_path, m), "rb") as f:
                blobs[m] = f.read()
    elif tar_path is not None:
        where = tar_path
        try:
            with tarfile.open(tar_path, "r:*") as tar:
                for m in members:
                    try:
                        f = tar.extractfile(f"{folder}/{m}")
                    except KeyError:
                        f = None
                    if f is None:
                        raise ValueError(f"{label}: {tar_path} has no member {folder}/{m}")
                    blobs[m] = f.read()
        except tarfile.TarError as e:
            raise ValueError(f"{label}: {tar_path} is not a readable tar archive: {e}") from e
    else:
        raise FileNotFoundError(f"{label}: expected {archive} or a folder {folder} in {root} (set data.root)")
    train = _cifar_split(label, where, [(m, blobs[m]) for m in train_members], key)
    test = _cifar_split(label, where, [(m, blobs[m]) for m in test_members], key)
    return train, test


# --- ImageNet's class folders ------------------------------------------------------------------
def _class_folders(label: str, path: str, root: str) -> List[str]:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{label}: expected class folders in {path} (set data.root to the folder "
                                f"holding train/ and val/; got {root})")
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"{label}: expected class folders in {path}, found none (set data.root)")
    return classes


# The datasets trqat loads itself, by data.name, with their fixed shape (channels, classes, image size);
# None: from the config (synthetic) or the class folders (imagenet). The controller's schema (data.name)
# and resolveConfig (model.in_channels, num_classes, image_size) hold the same: test/config/registries.test.ts.
DATASETS: Dict[str, Optional[Tuple[int, int, int]]] = {
    "fashion-mnist": (1, 10, 28),
    "cifar10": (3, 10, 32),
    "cifar100": (3, 100, 32),
    "imagenet": None,
    "synthetic": None,
}


def _check_shape(name: str, root: str, splits: Sequence[Split]) -> int:
    """The classes of a fixed-shape dataset, after checking its files hold DATASETS[name]'s shape."""
    shape = DATASETS[name]
    assert shape is not None
    channels, classes, size = shape
    for split in splits:
        if tuple(split.images.shape[1:]) != (channels, size, size):
            raise ValueError(f"{name}: the images in {root} are {list(split.images.shape[1:])} (channels, height, "
                             f"width), expected [{channels}, {size}, {size}]")
        if len(split) and not 0 <= int(split.labels.min()) <= int(split.labels.max()) < classes:
            raise ValueError(f"{name}: the labels in {root} span {int(split.labels.min())}..{int(split.labels.max())}, "
                             f"expected 0..{classes - 1}")
    return classes
