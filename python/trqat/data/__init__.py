"""Datasets and step-indexed batches: the formats (formats.py), the batches (batches.py), and
`build_data`, which makes the one a run's config asks for.

- In memory (uint8 tensors): Fashion-MNIST (IDX files), CIFAR-10/100 (the python-version archive or
  its extracted folder), a synthetic set. Augmentation: random crop with zero padding (2 px for
  Fashion-MNIST/synthetic, 4 px for CIFAR) + horizontal flip, drawn from a generator seeded by
  (seed, step). The batch of global step t depends on (seed, t) only, so a resumed run sees
  exactly, bit for bit, the batches an uninterrupted run would.
- ImageNet (ImageFolder layout, decoded from disk by a torch DataLoader): the sample order of
  epoch e is a permutation seeded by (seed, e), so the images of step t are determined by
  (seed, t), also after a resume. The random augmentation of each sample (RandomResizedCrop,
  flip) is seeded by (seed, step, position in the batch) inside whichever process decodes it
  (fork_rng in the main process), so it does not depend on num_workers, on which worker got the
  batch, or on a resume. Worker processes are also seeded by worker_init_fn from
  (seed, epoch, worker id) for any other randomness. Not bit-reproducible across machines or
  library versions: JPEG decoding and resizing (PIL/libjpeg versions, SIMD paths).
- Data parallelism: `data.batch_size` is the batch of one optimizer step over all ranks. Rank r of
  N takes the r-th N-th of every global batch, augmented exactly as in a single process (the draws
  are made for the whole batch), so the samples of step t do not depend on the number of ranks or
  loader processes. Evaluation gives every rank every N-th test batch: each sample once in all.
"""
import os
from typing import Any, Dict, Optional, Tuple

import torch

from .. import extras, progress
from ..distributed import Ranks
from ..factories import FactoryError, call_factory
from .batches import Data, LoaderData, StepData, augment, normalize, rank_part
from .formats import (_CIFAR, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, DATASETS, IMAGENET_MEAN,
                      IMAGENET_STD, MEAN, STD, Split, _check_shape, _class_folders, load_cifar, load_fashion_mnist,
                      load_idx, make_synthetic)
from .seeds import seed_for

__all__ = ["build_data", "build_imagenet", "build_factory_data", "DATASETS", "Split", "Data", "LoaderData", "StepData",
           "augment", "normalize", "rank_part", "seed_for", "load_cifar", "load_fashion_mnist", "load_idx",
           "make_synthetic", "MEAN", "STD", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
           "IMAGENET_MEAN", "IMAGENET_STD"]


def _subsets(cfg: Dict[str, Any], train: Any, test: Any) -> Tuple[Any, Any]:
    """The first data.train_subset / data.test_subset samples (null: all)."""
    def head(split: Any, n: Optional[int]) -> Any:
        if n is None:
            return split
        if isinstance(split, Split):
            return split.head(n)
        return torch.utils.data.Subset(split, range(min(n, len(split))))
    return head(train, cfg["train_subset"]), head(test, cfg["test_subset"])


def build_imagenet(cfg: Dict[str, Any], seed: int, device: torch.device, ranks: Ranks = Ranks()) -> LoaderData:
    """ImageFolder train/ and val/ under data.root with torchvision transforms."""
    tv = extras.torchvision("data.name imagenet")
    datasets, T = tv.datasets, tv.transforms
    root, size = cfg["root"], int(cfg["image_size"])
    label = "ImageNet"
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    classes = _class_folders(label, train_dir, root)
    val_classes = _class_folders(label, val_dir, root)
    if val_classes != classes:
        only = sorted(set(classes) ^ set(val_classes))[:5]
        raise ValueError(f"{label}: the class folders of {train_dir} ({len(classes)}) and {val_dir} "
                         f"({len(val_classes)}) differ, e.g. {', '.join(only)}")
    folders = 2 * len(classes)  # progress: class folders scanned, train then val
    try:
        train = datasets.ImageFolder(train_dir, is_valid_file=progress.FolderScan(train_dir, classes, 0, folders))
        test = datasets.ImageFolder(val_dir, is_valid_file=progress.FolderScan(val_dir, classes, len(classes), folders))
        progress.report("data", folders, folders)
    except (FileNotFoundError, RuntimeError) as e:
        raise FileNotFoundError(f"{label}: {e} (expected image files in the class folders of {root})") from e
    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    evaluate = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size)] + norm)
    augment = bool(cfg["augment"])
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] + norm) if augment else evaluate
    train, test = _subsets(cfg, train, test)
    return LoaderData(train, test, train_tf, evaluate, cfg["batch_size"], cfg["eval_batch_size"], seed,
                      augment, device, int(cfg["num_workers"]), num_classes=len(classes), ranks=ranks)


def _unchanged(sample: Any) -> Any:
    """The transform of factory datasets: they return tensors ready for the model."""
    return sample


def build_factory_data(cfg: Dict[str, Any], seed: int, device: torch.device, ranks: Ranks = Ranks()) -> LoaderData:
    """data.factory returns (train_dataset, test_dataset) of (image tensor, label) pairs. Random
    transforms inside them are seeded per sample from (seed, step), like ImageNet's."""
    ref = cfg["factory"]
    result = call_factory(ref, cfg["kwargs"], "data.factory")
    if not (isinstance(result, (tuple, list)) and len(result) == 2
            and all(hasattr(d, "__len__") and hasattr(d, "__getitem__") for d in result)):
        raise FactoryError(f"data.factory = {ref!r} must return (train_dataset, test_dataset), "
                           f"got {type(result).__name__}")
    train, test = _subsets(cfg, *result)
    return LoaderData(train, test, _unchanged, _unchanged, cfg["batch_size"], cfg["eval_batch_size"], seed,
                      bool(cfg["augment"]), device, int(cfg["num_workers"]), ranks=ranks)


def build_data(cfg: Dict[str, Any], seed: int, device: torch.device, ranks: Ranks = Ranks()) -> Any:
    """Data from the config's `data` section (Data, or LoaderData for imagenet and factories), this
    rank's share of it."""
    if cfg["factory"]:
        return build_factory_data(cfg, seed, device, ranks)
    name = cfg["name"]
    if name not in DATASETS:
        raise ValueError(f"unknown data.name {name!r}; available: {', '.join(DATASETS)}")
    if cfg["root"] is None and name != "synthetic":
        raise ValueError(f"data.root is required for data.name {name!r}")
    if name == "imagenet":
        return build_imagenet(cfg, seed, device, ranks)
    pad, mean, std = 2, (MEAN,), (STD,)
    if name == "fashion-mnist":
        train, test = load_fashion_mnist(cfg["root"])
        classes = _check_shape(name, cfg["root"], (train, test))
    elif name == "synthetic":
        train, test = make_synthetic(seed, **cfg["synthetic"])
        classes = cfg["synthetic"]["num_classes"]
    else:
        train, test = load_cifar(name, cfg["root"])
        pad, mean, std, classes = 4, _CIFAR[name][6], _CIFAR[name][7], _check_shape(name, cfg["root"], (train, test))
    train, test = _subsets(cfg, train, test)
    return Data(train, test, cfg["batch_size"], cfg["eval_batch_size"], seed,
                bool(cfg["augment"]), device, pad=pad, mean=mean, std=std, num_classes=classes, ranks=ranks)
