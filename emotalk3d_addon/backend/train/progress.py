"""A console progress bar with the loss: redrawn in place on a terminal, a line every
10 % otherwise (logs, CI)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True):
        self.label, self.total = label, max(1, int(total))
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1

    def line(self, step: int, loss: float) -> str:
        frac = min(1.0, step / self.total)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(frac * 24)
        return (f"{self.label} [{bar:<24}] {frac * 100:5.1f}% {step}/{self.total} "
                f"loss {loss:.4f} {elapsed:5.0f}s eta {eta:5.0f}s")

    def __call__(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line(step, loss))
            if step >= self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        decile = int(10 * step / self.total)
        if decile != self._last_decile or step >= self.total:
            self._last_decile = decile
            print(self.line(step, loss), file=self.stream, flush=True)
