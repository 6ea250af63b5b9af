"""The sustained suite's search for the highest rate (bench/suites/sustained.py: `highest`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.suites.sustained import highest

LADDER = (4, 8, 16, 32, 48, 64)


def capacity(limit: int, tried: list[int]) -> Callable[[int], bool]:
    """A machine that sustains up to `limit`/s, recording the rates it was tried at."""

    def sustained(rate: int) -> bool:
        tried.append(rate)
        return rate <= limit

    return sustained


@pytest.mark.parametrize(
    ("limit", "expected", "steps"),
    [
        # Between 32 and 48: 40 passes, 44 fails; reported within an eighth of the step.
        (43, 40, [4, 8, 16, 32, 48, 40, 44]),
        (47, 44, [4, 8, 16, 32, 48, 40, 44]),
        (33, 32, [4, 8, 16, 32, 48, 40, 36]),
        (5, 5, [4, 8, 6, 5]),
        (4, 4, [4, 8, 6, 5]),
        # The top of the ladder passes: nothing to refine. The bottom fails: none.
        (1_000, 64, list(LADDER)),
        (3, 0, [4]),
    ],
)
def test_the_highest_rate_is_refined_between_the_last_pass_and_the_first_failure(
    limit: int, expected: int, steps: list[int]
) -> None:
    tried: list[int] = []
    assert highest(LADDER, capacity(limit, tried)) == expected
    assert tried == steps


def test_a_gap_too_small_to_halve_is_left() -> None:
    tried: list[int] = []
    assert highest((4, 5), capacity(4, tried)) == 4
    assert tried == [4, 5]


def test_without_refinements_the_ladder_alone_decides() -> None:
    tried: list[int] = []
    assert highest(LADDER, capacity(43, tried), refinements=0) == 32
    assert tried == [4, 8, 16, 32, 48]
