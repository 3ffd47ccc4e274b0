"""Batches on their way to the device: prepared ahead in a background thread, then moved."""

from __future__ import annotations

import copy
import queue
import threading
from typing import Any

import torch

from .config import StepSource


class Prefetcher:
    """Prepares the next steps' batches in a thread (image decoding overlaps the GPU). Each item carries
    the source's state *after* it, so a checkpoint records exactly what the model has consumed."""

    def __init__(self, source: StepSource, depth: int, pin_memory: bool = False) -> None:
        self.source = source
        self.depth = depth
        self.pin_memory = pin_memory  # page-locked host memory: the copy to the GPU can overlap compute
        self._stop = threading.Event()
        if depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._run, name="docrag-prefetch", daemon=True)
            self._thread.start()

    def _produce(self) -> tuple[list, dict]:
        batches = self.source.next_step()
        if self.pin_memory:
            batches = [_pin(b) for b in batches]
        return batches, copy.deepcopy(self.source.state_dict())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = ("ok", self._produce())
            except BaseException as e:  # handed to the training thread, which re-raises it
                item = ("error", e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] == "error":
                return

    def next(self) -> tuple[list, dict]:
        if self.depth <= 0:
            return self._produce()
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        if self.depth > 0:
            self._thread.join(timeout=30)


def _pin(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pin(v) for k, v in batch.items()}
    return batch


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
