"""Frozen-prefix activation cache: run a frozen prefix over the data once per sweep.

The backbone always runs in inference mode (BatchNorm uses its moving statistics,
dropout is off), so the output of a frozen prefix is a pure function of the image.
Augmentation happens before the backbone: each augmented view of the training images
is a split of its own here (`add_inputs`), computed once. A phase that keeps
layers[:n] frozen can therefore train the suffix layers[n:] plus the head on those
outputs instead of on images.

Caches exist only at the candidate freeze depths (block boundaries), so trials share
them; `cut_for` picks the deepest one a phase may use. Arrays live in memory up to
`memory_bytes` (least recently used evicted first) and, written through, on disk
under `folder` up to `disk_bytes` (oldest dropped first), so later stages and runs
read them; they are recomputed when neither holds them. Keys
hash the backbone file's digest, the cut, the split and the preprocessed input
bytes, so a changed backbone or data set can never be served stale activations, and
disk entries are safely reused across runs.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.image_store import Rows, Streamed, Writer
from pipeline.train import devices

BATCH = 64  # small enough that a split's batches run side by side on every core
GROUP = 8 * BATCH  # images per forward pass whose outputs are written out together


def array_digest(array) -> str:
    """Content hash of an array: its dtype, shape and bytes (read a batch at a time from
    data on disk, image_store.Streamed: the same hash as the array it stands for)."""
    if isinstance(array, Streamed):
        return array.digest()
    array = np.asarray(array)
    h = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def pooled(x) -> np.ndarray:
    """Activations averaged over space (flattened when they have none), a batch at a
    time for data on disk: at 224 px MobileNetV2's output is 250 kB an image."""
    parts = x.batches() if isinstance(x, Streamed) else [np.asarray(x)]
    out = [b.mean(axis=(1, 2)) if b.ndim == 4 else b.reshape(len(b), -1) for b in parts]
    return np.concatenate(out)


@dataclass
class CacheStats:
    computed: int = 0  # arrays computed (one split at one cut each)
    memory_hits: int = 0
    disk_hits: int = 0
    uncached: int = 0  # phases that fell back to a shallower cut: too big for both budgets
    seconds: float = 0.0  # spent computing activations
    memory_bytes: int = 0
    disk_bytes: int = 0


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class ActivationCache:
    """Activations of `backbone.layers[:n]` for each split, at the candidate cuts."""

    def __init__(
        self,
        backbone,
        backbone_digest: str,
        inputs: dict[str, np.ndarray],
        cuts: Iterable[int],
        *,
        memory_bytes: int,
        disk_bytes: int,
        folder: Path | None,
    ):
        self.backbone = backbone
        self.inputs = inputs
        n_layers = len(backbone.layers)
        self.cuts = sorted({c for c in cuts if 0 < c <= n_layers})
        self.memory_budget, self.disk_budget, self.folder = memory_bytes, disk_bytes, folder
        self._digest = backbone_digest
        self._input_digests = {split: array_digest(x) for split, x in inputs.items()}
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._suffixes: dict[int, object] = {}
        self._prefixes: dict[int, object] = {}
        self.stats = CacheStats()

    def add_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """More splits (augmented views of a training split): computed when first asked for."""
        for split, x in inputs.items():
            self.inputs[split] = x
            self._input_digests[split] = array_digest(x)

    # --- which cut a phase may use ----------------------------------------------------------

    def cut_for(self, trained: set[str]) -> int:
        """The deepest cached cut with no layer before it trained so far (0: none)."""
        names = [layer.name for layer in self.backbone.layers]
        first = min((names.index(n) for n in trained), default=len(names))
        usable = [c for c in self.cuts if c <= first]
        fits = [c for c in usable if self.fits(c)]
        if usable and max(usable) not in fits:
            self.stats.uncached += 1
        return max(fits, default=0)

    def nbytes(self, cut: int, split: str) -> int:
        return int(np.prod(self.shape(cut))) * 4 * len(self.inputs[split])

    def fits(self, cut: int) -> bool:
        budget = max(self.memory_budget, self.disk_budget)
        return all(self.nbytes(cut, split) <= budget for split in self.inputs)

    # --- the suffix model and the cached inputs to it ---------------------------------------

    def _cut_tensor(self, cut: int):
        return self.backbone.layers[cut - 1].output

    def shape(self, cut: int) -> tuple[int, ...]:
        return tuple(self._cut_tensor(cut).shape[1:])

    def suffix(self, cut: int):
        """layers[cut:] as a model from the cut's tensor (None when nothing follows the cut)."""
        import keras

        if cut not in self._suffixes:
            tensor = self._cut_tensor(cut)
            same = tensor is self.backbone.output
            self._suffixes[cut] = None if same else keras.Model(tensor, self.backbone.output)
        return self._suffixes[cut]

    def key(self, cut: int, split: str) -> str:
        layer = self.backbone.layers[cut - 1].name
        text = f"{self._digest}|{cut}|{layer}|{split}|{self._input_digests[split]}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def activations(self, cut: int, split: str):
        """The prefix's output for a split: an array in memory or rows on disk (Rows).

        Call only while layers[:cut] hold their original weights (`cut_for` ensures it).
        """
        key = self.key(cut, split)
        if key in self._memory:
            self._memory.move_to_end(key)
            self.stats.memory_hits += 1
            return self._memory[key]
        path = self._path(key)
        if path is not None and path.is_file():
            self.stats.disk_hits += 1
            array = Rows(path)  # read a batch at a time, never mapped
            if array.nbytes <= self.memory_budget:  # read once, then served from memory
                self._keep(key, np.asarray(array))
                return self._memory[key]
            return array
        self._compute(cut, split)
        if key in self._memory:
            return self._memory[key]
        if path is not None and path.is_file():
            return Rows(path)
        raise RuntimeError(f"activations at cut {cut} fit neither cache budget")

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None or not self.disk_budget else self.folder / f"{key}.npy"

    def _prefix(self, cuts: tuple[int, ...]):
        """layers[:max(cuts)]'s traced inference pass with an output at each cut, built once
        per set of cuts."""
        import keras
        import tensorflow as tf

        if cuts not in self._prefixes:
            prefix = keras.Model(self.backbone.input, [self._cut_tensor(c) for c in cuts])
            shape = (None, *self.backbone.input_shape[1:])
            self._prefixes[cuts] = tf.function(
                lambda x: prefix(x, training=False), input_signature=[tf.TensorSpec(shape)]
            )
        return self._prefixes[cuts]

    def _held(self, cut: int, split: str) -> bool:
        key = self.key(cut, split)
        path = self._path(key)
        return key in self._memory or (path is not None and path.is_file())

    def _compute(self, cut: int, split: str) -> None:
        """One split's activations at `cut` and, in the same forward pass, at every other
        cut not held yet: a deeper cut's prefix runs through the shallower ones anyway, so
        this costs one pass per split instead of one per cut. A split is computed when a
        phase first needs it (an augmented view only when a trial with that augmentation
        runs). The pass goes GROUP images at a time, each group written to disk as it
        comes: only arrays that fit the memory budget are ever whole in memory."""
        start = time.perf_counter()
        cuts = tuple(
            c for c in self.cuts if c == cut or (self.fits(c) and not self._held(c, split))
        )
        forward, images = self._prefix(cuts), self.inputs[split]
        writers = {c: self._writer(c, split) for c in cuts}
        kept, room = {}, self.memory_budget  # the cut asked for first, within the budget
        for c in sorted(cuts, key=lambda c: c != cut):
            if self.nbytes(c, split) <= room:  # filled in place: no second copy
                kept[c] = np.empty((len(images), *self.shape(c)), np.float32)
                room -= self.nbytes(c, split)
        try:
            for group in range(0, len(images), GROUP):
                batches = devices.side_by_side(
                    lambda i: [t.numpy() for t in _as_list(forward(images[i : i + BATCH]))],
                    range(group, min(group + GROUP, len(images)), BATCH),
                )
                for index, c in enumerate(cuts):
                    part = np.concatenate([b[index] for b in batches])
                    if writers[c] is not None:
                        writers[c].append(part)
                    if c in kept:
                        kept[c][group : group + len(part)] = part
        except BaseException:
            for writer in writers.values():
                if writer is not None:
                    writer.abort()
            raise
        for c, writer in writers.items():
            if writer is not None:
                writer.close()  # atomic: a killed run never leaves half a file under the key
                self.stats.disk_bytes += self.nbytes(c, split)
        order = [c for c in cuts if c != cut] + [cut]
        for c in order:  # the cut asked for last: keeping the others cannot evict it
            if c in kept:
                self._keep(self.key(c, split), kept.pop(c))
        self.stats.computed += len(cuts)
        self.stats.seconds += time.perf_counter() - start

    def _writer(self, cut: int, split: str) -> Writer | None:
        """Written to disk as well as kept in memory: the stages after the sweep (final's
        depth curve, a re-run sweep) read what it computed instead of computing it again."""
        nbytes = self.nbytes(cut, split)
        path = self._path(self.key(cut, split))
        if path is None or nbytes > self.disk_budget:
            return None
        self._make_room_on_disk(nbytes)
        return Writer(path, self.shape(cut), np.float32)

    def _keep(self, key: str, array: np.ndarray) -> None:
        """Kept as a NumPy array that phases read a batch at a time (loop._take): a tensor
        copy beside it would double the memory `memory_bytes` bounds."""
        while self.stats.memory_bytes + array.nbytes > self.memory_budget:
            _, evicted = self._memory.popitem(last=False)
            self.stats.memory_bytes -= evicted.nbytes
        self._memory[key] = array
        self.stats.memory_bytes += array.nbytes

    def _make_room_on_disk(self, needed: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        files = sorted(self.folder.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        used = sum(p.stat().st_size for p in files)
        while files and used + needed > self.disk_budget:
            oldest = files.pop(0)
            used -= oldest.stat().st_size
            oldest.unlink()
