"""The peers table: backbeat's ratio to the best peer is the median of the ratios taken within
each round, with their range."""

from __future__ import annotations

from bench import peers, report

ROUND_1 = {
    "backbeat": {peers.FIRES: 100.0, peers.CPU: 10.0},
    "arq": {peers.FIRES: 50.0, peers.CPU: 20.0},
    "saq": {peers.FIRES: 25.0},
}
ROUND_2 = {
    "backbeat": {peers.FIRES: 60.0, peers.CPU: 10.0},
    "arq": {peers.FIRES: 40.0, peers.CPU: 5.0},
    "saq": {peers.FIRES: 20.0},
}


def _row(table: str, name: str) -> list[str]:
    [line] = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_ratios_are_taken_within_each_round_then_their_median_with_their_range() -> None:
    slow = {"backbeat": {peers.FIRES: 30.0}, "arq": {peers.FIRES: 30.0}, "saq": {peers.FIRES: 10.0}}
    fast = {"backbeat": {peers.FIRES: 90.0}, "arq": {peers.FIRES: 80.0}, "saq": {peers.FIRES: 10.0}}

    table = report.peers_table([ROUND_1, slow, fast], [peers.FIRES], peers.LOWER_IS_BETTER)

    # 100/50, 30/30 and 90/80: a median of 1.125; the ratio of the medians, 90/50, would say 1.8
    assert _row(table, peers.FIRES) == [peers.FIRES, "90.0", "50.0", "10.0", "1.1x (1-2x)"]


def test_a_cost_compares_the_lowest_peer_with_backbeat() -> None:
    table = report.peers_table([ROUND_1, ROUND_2], [peers.CPU], peers.LOWER_IS_BETTER)

    assert _row(table, peers.CPU)[-1] == "1.2x (0.5-2x)"  # 20/10 and 5/10


def test_a_figure_of_zero_or_missing_has_no_ratio_and_one_round_no_range() -> None:
    stalled = {**ROUND_1, "arq": {peers.FIRES: 0.0}, "saq": {peers.FIRES: 0.0}}

    table = report.peers_table([stalled], [peers.FIRES, peers.MEMORY], peers.LOWER_IS_BETTER)

    assert _row(table, peers.FIRES)[-1] == "-"
    assert _row(table, peers.MEMORY) == [peers.MEMORY, "-", "-", "-", "-"]
    assert _row(report.peers_table([ROUND_1], [peers.FIRES], ()), peers.FIRES)[-1] == "2x"
