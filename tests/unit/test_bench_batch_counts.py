"""``bench.batch_counts``: its runs at N and 2N add the same tasks before the N more of the second."""

from __future__ import annotations

from bench.batch_counts import batches


def test_the_run_at_2n_adds_the_tasks_of_the_run_at_n_first() -> None:
    runs = []
    for n in (100, 200):
        before, measured = batches(n, batch=50, stored=2000)
        runs.append(([t.id for b in before for t in b], [t.id for b in measured for t in b]))
    (before_n, measured_n), (before_2n, measured_2n) = runs

    assert len(before_n) == 2100 and len(measured_n) == 100 and len(measured_2n) == 200
    assert before_2n == before_n
    assert measured_2n[:100] == measured_n
    assert len(set(before_2n + measured_2n)) == 2300
