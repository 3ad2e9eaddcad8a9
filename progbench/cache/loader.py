"""A prefetching batch loader over the uint8 image store.

On CUDA a background thread reads the next batches from Zarr and pins them while the GPU works
on the current one, so the data path is not the bottleneck. On a CPU the model already uses
every core: a reader thread only steals them from its threads (measured with
benchmarks/extract_throughput.py on 2 cores), so batches are read in turn instead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from progbench.cache.imagestore import ImageStore

_END = object()


class PrefetchLoader:
    """Yields `(rows, uint8 tensor (B, S, S))` for `rows` of the store, in the given order."""

    def __init__(
        self,
        store: ImageStore,
        batches: list[np.ndarray],
        prefetch: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        """`prefetch`: batches read ahead; None is 3 when pinning for CUDA, else 0 (in turn)."""
        self.store = store
        self.batches = batches
        self.prefetch = (3 if pin_memory else 0) if prefetch is None else max(0, prefetch)
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return len(self.batches)

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(self.store.read(rows))
        return t.pin_memory() if self.pin_memory else t

    def __iter__(self) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        if self.prefetch == 0:
            for rows in self.batches:
                yield rows, self._read(rows)
            return
        q: queue.Queue[object] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for rows in self.batches:
                    if stop.is_set():
                        return
                    q.put((rows, self._read(rows)))
                q.put(_END)
            except BaseException as err:  # surface reader errors in the consumer
                q.put(err)

        thread = threading.Thread(target=work, daemon=True, name="progbench-prefetch")
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)


def batches_of(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
