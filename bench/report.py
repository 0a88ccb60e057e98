"""Figures, their ratios to APScheduler, and the one markdown table a run prints."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

HISTORY_CPU = "history off → on: CPU per fire (share), fires/s"
HISTORY_COUNTS = "history off → on: instructions per fire (share)"
COLUMNS = [
    "adds/s (not started)",
    "adds/s (100 at once)",
    "adds/s (single)",
    "adds/s (batch)",
    "fires/s",
    "lateness p50 / p99 ms",
    "wake-up p50 / p99 ms",
    "RSS MB, N stored",
    "claim_due µs, 1k → N",
    "next_wakeup µs, 1k → N",
    "add→run µs, 1k → N",
    HISTORY_CPU,
    HISTORY_COUNTS,
]


@dataclass(slots=True)
class Figure:
    text: str
    """What the table shows."""
    value: float | None = None
    """The number a ratio uses (None: no ratio)."""


@dataclass(slots=True)
class Row:
    system: str
    store: str
    baseline: str | None = None
    """The APScheduler store this row is compared with."""
    figures: dict[str, Figure] = field(default_factory=dict)


def rate(value: float) -> Figure:
    return Figure(f"{value:,.0f}", value)


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}"


def us(seconds: float) -> str:
    value = seconds * 1e6
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples`` (seconds)."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def spread(samples: list[float]) -> Figure:
    """``p50 / p99`` in ms; the ratio uses p99."""
    p50, p99 = percentiles(samples)
    return Figure(f"{ms(p50)} / {ms(p99)}", p99)


def flat(small: float, large: float) -> Figure:
    """A cost with 1k stored → with N stored (seconds, shown in µs); no ratio: the calls differ."""
    return Figure(f"{us(small)} → {us(large)}")


def na(reason: str) -> Figure:
    return Figure(f"n/a ({reason})")


def ratio(figure: Figure, base: Figure | None) -> str:
    if figure.value is None or base is None or not base.value:
        return ""
    return f" ({figure.value / base.value:.2g}x)"


def table(rows: list[Row]) -> str:
    """One markdown table: a row per (system, store), a column per figure, ratios vs APScheduler."""
    by_store = {row.store: row for row in rows if row.baseline is None}
    columns = [c for c in COLUMNS if any(c in row.figures for row in rows)]
    lines = [
        "| system | store | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        base = by_store.get(row.baseline) if row.baseline else None
        cells = []
        for column in columns:
            figure = row.figures.get(column)
            if figure is None:
                cells.append("-")
            else:
                cells.append(figure.text + ratio(figure, base.figures.get(column) if base else None))
        lines.append(f"| {row.system} | {row.store} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peers_table(
    rounds: Sequence[dict[str, dict[str, float]]], names: Sequence[str], lower: Collection[str]
) -> str:
    """A row per figure, a column per system (the median over the rounds), then backbeat against
    the best peer (above 1x: backbeat is better, whether the figure is a rate or a cost): the
    median of each round's ratio, taken within the round, with their range when there are several.
    The machine's speed drifts between rounds, so a ratio of two medians taken minutes apart says
    less than the ratios measured side by side."""
    systems = list(rounds[0])
    lines = [
        "| | " + " | ".join(systems) + " | backbeat vs best peer |",
        "|---|" + "---:|" * (len(systems) + 1),
    ]
    for name in names:
        cells = [_number(_median(r[system].get(name) for r in rounds)) for system in systems]
        ratios = [r for r in (_versus_best(m, name, name in lower) for m in rounds) if r is not None]
        versus = "-"
        if ratios:
            factor = statistics.median(ratios)
            versus = f"{factor:.2g}x" + (" (worse)" if factor < 1 else "")
            if len(ratios) > 1:
                versus += f" ({min(ratios):.2g}-{max(ratios):.2g}x)"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {versus} |")
    return "\n".join(lines)


def _versus_best(measured: dict[str, dict[str, float]], name: str, lower: bool) -> float | None:
    """The first system's figure against the best of the others in one round (above 1: better)."""
    ours, *others = (figures.get(name) for figures in measured.values())
    peers = [value for value in others if value is not None]
    best = (min(peers) if lower else max(peers)) if peers else None
    if not ours or not best:  # nothing to compare (a figure of 0 has no ratio)
        return None
    return best / ours if lower else ours / best


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
