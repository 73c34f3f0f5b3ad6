"""How the benchmarks write a figure down: its value, the target the project set for it where there is one, and
the machine's load average (1, 5, 15 minutes, as `uptime` gives it) when it was taken, since a figure from a busy
machine means little without it."""

from __future__ import annotations

import os


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def measured(value: str, target: str | None = None, met: bool | None = None) -> str:
    """`value`, then in brackets `target` (with whether it was met, when `met` is given) and the load average now."""
    notes = []
    if target is not None:
        notes.append(f"target {target}" + ("" if met is None else (": met" if met else ": NOT MET")))
    notes.append(f"load average {load_average()}")
    return f"{value}  ({'; '.join(notes)})"


def print_figures(figures: dict[str, str]) -> None:
    """One line per figure, labels aligned, in label order."""
    width = max(len(label) for label in figures)
    for label in sorted(figures):
        print(f"{label:<{width}}  {figures[label]}", flush=True)
