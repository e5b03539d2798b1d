"""Datasets and step-indexed batches.

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
import gzip
import itertools
import os
import pickle
import random
import tarfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import extras, progress
from .distributed import Ranks
from .factories import FactoryError, call_factory

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics (also used for synthetic data)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # ubyte images (3 dims), ubyte labels (1 dim)
_PERM, _AUG, _WORKER = 0, 1, 3  # stream tags for seed_for (2: synthetic data)


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


def rank_part(batch_size: int, ranks: Ranks) -> slice:
    """The slice of a global batch that rank `ranks.rank` trains on."""
    if batch_size % ranks.world_size:
        raise ValueError(f"data.batch_size ({batch_size}) is the batch of one step over all ranks: it must be a "
                         f"multiple of the {ranks.world_size} ranks")
    share = batch_size // ranks.world_size
    return slice(ranks.rank * share, (ranks.rank + 1) * share)


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
    g = _generator(seed, 2)
    protos = torch.rand(num_classes, channels, 7, 7, generator=g)
    protos = F.interpolate(protos, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def split(n: int) -> Split:
        labels = torch.randint(num_classes, (n,), generator=g)
        noise = torch.rand(n, channels, image_size, image_size, generator=g)
        images = (0.6 * protos[labels] + 0.4 * noise) * 255
        return Split(images.round().clamp(0, 255).to(torch.uint8), labels)
    return split(train_size), split(test_size)


def augment(images: torch.Tensor, g: torch.Generator, pad: int = 2, part: slice = slice(None)) -> torch.Tensor:
    """Random crop with `pad` px of zero padding and random horizontal flip, per sample. The draws are
    made for the whole batch; `part` selects the samples returned (a rank's share)."""
    n, c, h, w = images.shape
    dy = torch.randint(2 * pad + 1, (n, 1), generator=g)[part]
    dx = torch.randint(2 * pad + 1, (n, 1), generator=g)[part]
    flip = (torch.rand(n, 1, generator=g) < 0.5)[part]
    padded = F.pad(images[part], (pad, pad, pad, pad))
    cols = torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w)) + dx  # [n, w]
    rows = torch.arange(h) + dy  # [n, h]
    return padded[torch.arange(len(padded))[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def normalize(images: torch.Tensor, mean: Sequence[float] = (MEAN,), std: Sequence[float] = (STD,)) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float, (x/255 - mean) / std per channel (one value: every channel)."""
    x = images.float() / 255
    if len(mean) == 1:
        return (x - mean[0]) / std[0]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


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


# --- in-memory data ----------------------------------------------------------------------------
class Data:
    """Training batches indexed by global step, and the test set in eval batches (in memory)."""

    def __init__(self, train: Split, test: Split, batch_size: int, eval_batch_size: int,
                 seed: int, augment: bool, device: torch.device, pad: int = 2,
                 mean: Sequence[float] = (MEAN,), std: Sequence[float] = (STD,),
                 num_classes: Optional[int] = None, ranks: Ranks = Ranks()):
        if len(train) < batch_size:
            raise ValueError(f"training set has {len(train)} samples, fewer than one batch ({batch_size})")
        self.part = rank_part(batch_size, ranks)
        self.ranks = ranks
        self.train, self.test = train, test
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.augment, self.device = seed, augment, device
        self.pad, self.mean, self.std = pad, tuple(mean), tuple(std)
        self._stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self.num_classes = num_classes
        self.steps_per_epoch = len(train) // batch_size  # drop_last
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _to_device(self, images: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """uint8 images to the device (a quarter of the bytes of floats), normalized there."""
        if self.device.type == "cuda":
            images = images.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
        if self._stats is None:  # made once on the device: a per-batch tensor would be a host copy every step
            self._stats = tuple(torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1).to(self.device) for v in (self.mean, self.std))
        mean, std = self._stats
        return (images.float() / 255 - mean) / std, y

    def train_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the (normalized images, labels) of global step `step`, on the device."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm_epoch, self._perm = epoch, torch.randperm(len(self.train), generator=_generator(self.seed, _PERM, epoch))
        idx = self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]
        if self.augment:
            images = augment(self.train.images[idx], _generator(self.seed, _AUG, step), self.pad, self.part)
        else:
            images = self.train.images[idx[self.part]]
        return self._to_device(images, self.train.labels[idx[self.part]])

    def test_batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's test batches: every world_size-th, starting at its rank."""
        step = self.eval_batch_size * self.ranks.world_size
        for i in range(self.eval_batch_size * self.ranks.rank, len(self.test), step):
            sl = slice(i, i + self.eval_batch_size)
            yield self._to_device(self.test.images[sl], self.test.labels[sl])


# --- ImageNet ----------------------------------------------------------------------------------
class _SeededSamples(torch.utils.data.Dataset):
    """Wraps a dataset of (PIL image, label); item (index, seed) applies `transform` with the torch
    and Python RNGs seeded by `seed` (seed None: no reseeding, for deterministic transforms)."""

    def __init__(self, dataset: Any, transform: Any):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Any) -> Tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, label = self.dataset[index]
        if seed is None:
            return self.transform(image), label
        in_worker = torch.utils.data.get_worker_info() is not None
        if in_worker:
            torch.manual_seed(seed)
            random.seed(seed)
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):  # keep the main process's RNG streams untouched
            state = random.getstate()
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                return self.transform(image), label
            finally:
                random.setstate(state)


class _StepBatches(torch.utils.data.Sampler):
    """The batches of steps `start`, `start + 1`, ... to the end of the run (one loader for the whole
    run, so its worker processes and prefetching carry over epoch boundaries): lists of (sample
    index, augmentation seed), this rank's part of each global batch. Epoch e's order is a
    permutation seeded by (seed, e)."""

    def __init__(self, size: int, batch_size: int, steps_per_epoch: int, start: int, seed: int, seeded: bool,
                 part: slice = slice(None)):
        self.size, self.batch_size, self.steps_per_epoch, self.start = size, batch_size, steps_per_epoch, start
        self.seed, self.seeded, self.part = seed, seeded, part

    def __iter__(self) -> Iterator[List[Any]]:
        epoch, perm = -1, torch.empty(0, dtype=torch.long)
        for step in itertools.count(self.start):
            e, pos = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, perm = e, torch.randperm(self.size, generator=_generator(self.seed, _PERM, e))
            idx = perm[pos * self.batch_size:(pos + 1) * self.batch_size].tolist()
            # seeds by position in the global batch, so a sample's crop does not depend on the ranks
            if self.seeded:
                base = seed_for(self.seed, _AUG, step)
                yield [(i, (base + j) % 2**63) for j, i in enumerate(idx)][self.part]
            else:
                yield [(i, None) for i in idx][self.part]


class _WorkerInit:
    """worker_init_fn (a class, so that it pickles under the spawn start method): seeds torch,
    random and numpy of a loader process from (seed, first step, worker id)."""

    def __init__(self, seed: int, epoch: int):
        self.seed, self.epoch = seed, epoch

    def __call__(self, worker_id: int) -> None:
        s = seed_for(self.seed, _WORKER, self.epoch + 1, worker_id)  # -1: the test loader
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s % 2**32)


class LoaderData:
    """ImageNet-style data decoded by a torch DataLoader; same interface as Data."""

    def __init__(self, train: Any, test: Any, train_transform: Any, test_transform: Any, batch_size: int,
                 eval_batch_size: int, seed: int, augment: bool, device: torch.device, num_workers: int,
                 num_classes: Optional[int] = None, ranks: Ranks = Ranks()):
        if len(train) < batch_size:
            raise ValueError(f"training set has {len(train)} samples, fewer than one batch ({batch_size})")
        self.part = rank_part(batch_size, ranks)
        self.ranks = ranks
        self.train, self.test = train, test
        self._train = _SeededSamples(train, train_transform)
        self._test = _SeededSamples(test, test_transform)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.augment, self.device, self.num_workers = seed, augment, device, num_workers
        self.num_classes = num_classes
        self.steps_per_epoch = len(train) // batch_size  # drop_last
        self._iter: Optional[Iterator[Any]] = None
        self._next_step = -1
        self._test_loader: Any = None

    def _loader(self, dataset: Any, batch_sampler: Any, tag: int) -> torch.utils.data.DataLoader:
        # Prefetching keeps the GPU fed; pinned memory makes the copies asynchronous.
        extra: Dict[str, Any] = {"prefetch_factor": 4, "persistent_workers": True} if self.num_workers > 0 else {}
        return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=self.num_workers,
                                           pin_memory=self.device.type == "cuda",
                                           worker_init_fn=_WorkerInit(self.seed, tag) if self.num_workers > 0 else None,
                                           **extra)

    def train_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the batch of global step `step`, on the device."""
        if self._iter is None or step != self._next_step:  # the first batch, or random access/resume
            sampler = _StepBatches(len(self.train), self.batch_size, self.steps_per_epoch, step, self.seed,
                                   self.augment, self.part)
            self._iter = iter(self._loader(self._train, sampler, step))
        x, y = next(self._iter)
        self._next_step = step + 1
        return self._to_device(x, y)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)

    def test_batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's test batches: every world_size-th, starting at its rank."""
        if self._test_loader is None:
            n, size, ranks = len(self.test), self.eval_batch_size, self.ranks
            batches = [list(range(i, min(i + size, n))) for i in range(size * ranks.rank, n, size * ranks.world_size)]
            # built once: with worker processes, they stay up between evaluations
            self._test_loader = self._loader(self._test, batches, -1) if batches else []
        for x, y in self._test_loader:
            yield self._to_device(x, y)


def _class_folders(label: str, path: str, root: str) -> List[str]:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{label}: expected class folders in {path} (set data.root to the folder "
                                f"holding train/ and val/; got {root})")
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"{label}: expected class folders in {path}, found none (set data.root)")
    return classes


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


# The datasets trqat loads itself, by data.name, with their fixed shape (channels, classes, image size);
# None: from the config (synthetic) or the class folders (imagenet). The controller's schema (data.name)
# and resolveConfig (model.in_channels, num_classes, image_size) hold the same: test/registries.test.ts.
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
