"""Phase timings and notes of the engine-compatibility test (printed by conftest.py)."""

from __future__ import annotations

import time
from contextlib import contextmanager

PHASES: list[tuple[str, float]] = []
NOTES: list[str] = []
STARTED = time.monotonic()


@contextmanager
def phase(name: str):
    start = time.monotonic()
    try:
        yield
    finally:
        PHASES.append((name, time.monotonic() - start))


def elapsed() -> float:
    return time.monotonic() - STARTED
