"""The progress bar shown by ``add_items(..., progress=True)``: tqdm when it is installed, else a
plain text line on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


class TextBar:
    """A one-line text progress bar on stderr, redrawn at most every 0.1 s."""

    def __init__(self, total: int, desc: str = "inserting") -> None:
        self.total = total
        self.desc = desc
        self.start = time.monotonic()
        self.last = 0.0
        self.stream = sys.stderr

    def __call__(self, event: Any) -> None:
        now = time.monotonic()
        if event.done < event.total and now - self.last < 0.1:
            return
        self.last = now
        elapsed = now - self.start
        rate = event.done / elapsed if elapsed > 0 else 0.0
        width = 30
        filled = int(width * event.fraction)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r{self.desc}: [{bar}] {100 * event.fraction:5.1f}% {event.done}/{event.total} {rate:,.0f}/s"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class TqdmBar:
    """Adapts ``tqdm.tqdm`` to progress events."""

    def __init__(self, total: int, desc: str = "inserting") -> None:
        import tqdm  # type: ignore[import-not-found]

        self.bar = tqdm.tqdm(total=total, desc=desc, unit="vec")

    def __call__(self, event: Any) -> None:
        self.bar.update(event.done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def default_bar(total: int) -> Any:
    """A tqdm bar if tqdm is installed, else a plain text bar on stderr."""
    try:
        return TqdmBar(total)
    except ImportError:
        return TextBar(total)
