"""Prints the engine-compatibility test's time per phase and its notes at the end of the run."""

from __future__ import annotations

import compat_timing


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if compat_timing.PHASES:
        tr.section("engine compatibility: time per phase")
        for name, seconds in compat_timing.PHASES:
            tr.write_line(f"{seconds:7.1f} s  {name}")
        tr.write_line(f"{compat_timing.elapsed():7.1f} s  total, since the tests were collected")
    if compat_timing.NOTES:
        tr.section("engine compatibility: notes")
        for note in compat_timing.NOTES:
            tr.write_line(note)
