"""Batches indexed by global step, this rank's share of each, and the test set in eval batches.

`StepData` holds what both kinds share (the sizes, the rank's share, the seed, which test batches
are this rank's); `Data` serves in-memory datasets (formats.py) with its own augmentation,
`LoaderData` datasets decoded by a torch DataLoader (ImageNet, factories). The package's docstring
says how the seeding makes the batch of step t depend on (seed, t) only.
"""
import itertools
import random
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..distributed import Ranks, batch_share
from .formats import MEAN, STD, Split
from .seeds import AUG, PERM, WORKER, generator, seed_for


def rank_part(batch_size: int, ranks: Ranks) -> slice:
    """The slice of a global batch that rank `ranks.rank` trains on."""
    share = batch_share(batch_size, ranks.world_size)
    return slice(ranks.rank * share, (ranks.rank + 1) * share)


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


class StepData:
    """What Data and LoaderData share: the global batch of one step over all ranks and this rank's
    share of it, the epoch length (drop_last), and this rank's test batches (every world_size-th)."""

    def __init__(self, train: Any, test: Any, batch_size: int, eval_batch_size: int, seed: int, augment: bool,
                 device: torch.device, num_classes: Optional[int], ranks: Ranks):
        if len(train) < batch_size:
            raise ValueError(f"training set has {len(train)} samples, fewer than one batch ({batch_size})")
        self.part = rank_part(batch_size, ranks)
        self.ranks = ranks
        self.train, self.test = train, test
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.augment, self.device = seed, augment, device
        self.num_classes = num_classes
        self.steps_per_epoch = len(train) // batch_size  # drop_last

    def _test_slices(self) -> List[slice]:
        """This rank's test batches: every world_size-th, starting at its rank."""
        n, size, ranks = len(self.test), self.eval_batch_size, self.ranks
        return [slice(i, min(i + size, n)) for i in range(size * ranks.rank, n, size * ranks.world_size)]

    def train_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the (normalized images, labels) of global step `step`, on the device."""
        raise NotImplementedError

    def test_batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's test batches, on the device."""
        raise NotImplementedError


# --- in-memory data ----------------------------------------------------------------------------
class Data(StepData):
    """Training batches indexed by global step, and the test set in eval batches (in memory)."""

    def __init__(self, train: Split, test: Split, batch_size: int, eval_batch_size: int,
                 seed: int, augment: bool, device: torch.device, pad: int = 2,
                 mean: Sequence[float] = (MEAN,), std: Sequence[float] = (STD,),
                 num_classes: Optional[int] = None, ranks: Ranks = Ranks()):
        super().__init__(train, test, batch_size, eval_batch_size, seed, augment, device, num_classes, ranks)
        self.pad, self.mean, self.std = pad, tuple(mean), tuple(std)
        self._stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
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
            self._perm_epoch, self._perm = epoch, torch.randperm(len(self.train), generator=generator(self.seed, PERM, epoch))
        idx = self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]
        if self.augment:
            images = augment(self.train.images[idx], generator(self.seed, AUG, step), self.pad, self.part)
        else:
            images = self.train.images[idx[self.part]]
        return self._to_device(images, self.train.labels[idx[self.part]])

    def test_batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for sl in self._test_slices():
            yield self._to_device(self.test.images[sl], self.test.labels[sl])


# --- decoded by a DataLoader (ImageNet, factories) ------------------------------------------------
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
                epoch, perm = e, torch.randperm(self.size, generator=generator(self.seed, PERM, e))
            idx = perm[pos * self.batch_size:(pos + 1) * self.batch_size].tolist()
            # seeds by position in the global batch, so a sample's crop does not depend on the ranks
            if self.seeded:
                base = seed_for(self.seed, AUG, step)
                yield [(i, (base + j) % 2**63) for j, i in enumerate(idx)][self.part]
            else:
                yield [(i, None) for i in idx][self.part]


class _WorkerInit:
    """worker_init_fn (a class, so that it pickles under the spawn start method): seeds torch,
    random and numpy of a loader process from (seed, first step, worker id)."""

    def __init__(self, seed: int, epoch: int):
        self.seed, self.epoch = seed, epoch

    def __call__(self, worker_id: int) -> None:
        s = seed_for(self.seed, WORKER, self.epoch + 1, worker_id)  # -1: the test loader
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s % 2**32)


class LoaderData(StepData):
    """ImageNet-style data decoded by a torch DataLoader; same interface as Data."""

    def __init__(self, train: Any, test: Any, train_transform: Any, test_transform: Any, batch_size: int,
                 eval_batch_size: int, seed: int, augment: bool, device: torch.device, num_workers: int,
                 num_classes: Optional[int] = None, ranks: Ranks = Ranks()):
        super().__init__(train, test, batch_size, eval_batch_size, seed, augment, device, num_classes, ranks)
        self._train = _SeededSamples(train, train_transform)
        self._test = _SeededSamples(test, test_transform)
        self.num_workers = num_workers
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
        if self._test_loader is None:
            batches = [list(range(sl.start, sl.stop)) for sl in self._test_slices()]
            # built once: with worker processes, they stay up between evaluations
            self._test_loader = self._loader(self._test, batches, -1) if batches else []
        for x, y in self._test_loader:
            yield self._to_device(x, y)
