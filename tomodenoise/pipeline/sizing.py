"""How much work one task gets: chunked stages are cut by work, not by a fixed chunk count.

A task has a fixed cost (scheduling, opening the store, building an ASTRA projector or
loading a network) on top of its compute. Thousands of tiny tasks spend most of a small
scan's time on that fixed cost; one task per worker leaves nothing to balance. So the
work units of a stage (Zarr chunks: one split, time step, channel and z-slab each) are
grouped into about ``compute.tasks_per_worker`` tasks per worker, and a group never holds
more than ``compute.task_memory`` bytes of data, so that a large scan is cut into more,
smaller tasks and each worker's memory stays flat in the volume size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["group_size", "grouped", "parse_bytes"]

T = TypeVar("T")
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: str | int | float) -> int:
    """``"2GiB"`` -> 2147483648; ``"500MB"`` -> 500000000; numbers are bytes."""
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a memory size: {value!r} (use e.g. 512MiB, 4GiB, 2GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def group_size(n_units: int, unit_bytes: int, *, workers: int, tasks_per_worker: int = 3,
               task_memory: str | int = "2GiB") -> int:
    """Work units per task: about ``tasks_per_worker`` tasks per worker, at most ``task_memory``
    bytes of data per task (never fewer than one unit)."""
    if n_units <= 0:
        return 1
    by_count = math.ceil(n_units / max(1, workers * tasks_per_worker))
    by_memory = max(1, parse_bytes(task_memory) // max(1, unit_bytes))
    return max(1, min(by_count, by_memory))


def grouped(units: Sequence[T], size: int) -> list[list[T]]:
    """``units`` in consecutive groups of ``size`` (the last may be smaller)."""
    size = max(1, int(size))
    return [list(units[i : i + size]) for i in range(0, len(units), size)]
