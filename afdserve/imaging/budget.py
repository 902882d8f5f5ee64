"""A request's CPU budget: the bound on the work one request can cause, whatever its bytes.

The structure limits (``afdserve.imaging.structure``) refuse the costly files we know of from their
bytes; the budget bounds everything else by the CPU time it actually takes. It is checked where
the work can be interrupted: between the blocks Pillow reads while it opens and decodes a file
(:class:`BudgetedReader`, a few kilobytes at a time), between the stages of preparing an image,
and between the tile batches of a restorer.

CPU time rather than wall time: a request on a busy machine is not refused because other
processes took the cores. Decoding and preparing run on one thread and count that thread's time;
a restorer runs torch on every core of the worker and counts the whole process's.
"""

from __future__ import annotations

import io
import time
from typing import Callable

from afdserve.imaging.errors import ImageDecodeError

__all__ = ["BudgetExceeded", "BudgetedReader", "CpuBudget"]

# Pillow reads a file this many bytes at a time while decoding it: the budget is checked that
# often. Pillow's default, 64 KiB, can hold thousands of cheap-to-send progressive scans; with 1 KiB
# a 13.3 MiB 40-megapixel progressive JPEG decoded in the same 1.07 s.
READ_BLOCK = 1024


class BudgetExceeded(ImageDecodeError):
    """A request that used up its CPU budget: a 413 for that request alone."""

    def __init__(self, message: str):
        super().__init__(message, status=413)


class CpuBudget:
    """``seconds`` of CPU from now, on this thread (``clock=time.thread_time``) or across the
    process (``time.process_time``, for work spread over torch's threads)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.thread_time):
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()

    def spent(self) -> float:
        return self.clock() - self.start

    def check(self, stage: str) -> None:
        spent = self.spent()
        if spent > self.seconds:
            raise BudgetExceeded(f"{stage} took more than this server's CPU budget of {self.seconds:g} s "
                                 f"per request ({spent:.1f} s): send a smaller or simpler image")

    def check_estimate(self, stage: str, estimate_s: float) -> None:
        """Refuse before doing work that would take ``estimate_s`` in all, past the budget."""
        if estimate_s > self.seconds:
            raise BudgetExceeded(f"{stage} would take about {estimate_s:.0f} s of CPU, over this server's budget "
                                 f"of {self.seconds:g} s per request: send a smaller image")


class BudgetedReader(io.BytesIO):
    """The request body as the file Pillow reads, checking the budget at every read."""

    def __init__(self, data: bytes, budget: CpuBudget | None):
        super().__init__(data)
        self.budget = budget

    def read(self, size: int | None = -1) -> bytes:
        if self.budget is not None:
            self.budget.check("decoding the image")
        return super().read(size)
