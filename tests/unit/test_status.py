"""Status ranking: tracking never moves backwards and never leaves failed, whatever the arrival order."""

from __future__ import annotations

import itertools

import pytest

from wabridge.schemas.status import MessageStatus, advance, is_advance

S = MessageStatus


def test_ranks_follow_the_lifecycle() -> None:
    assert S.RECEIVED.rank == S.ACCEPTED.rank
    assert S.ACCEPTED.rank < S.SENT.rank < S.DELIVERED.rank < S.READ.rank < S.PLAYED.rank < S.FAILED.rank
    assert S.FAILED.is_terminal
    assert not any(status.is_terminal for status in S if status is not S.FAILED)


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, S.SENT, S.SENT),
        (S.SENT, S.DELIVERED, S.DELIVERED),
        (S.READ, S.DELIVERED, S.READ),  # late delivered after read: ignored
        (S.READ, S.SENT, S.READ),
        (S.SENT, S.READ, S.READ),  # skipped delivered
        (S.DELIVERED, S.FAILED, S.FAILED),
        (S.FAILED, S.DELIVERED, S.FAILED),  # failed is terminal
        (S.FAILED, S.READ, S.FAILED),
        (S.FAILED, S.PLAYED, S.FAILED),
        (S.ACCEPTED, S.RECEIVED, S.ACCEPTED),  # equal rank keeps the current one
        (S.READ, S.PLAYED, S.PLAYED),
    ],
)
def test_advance(current: MessageStatus | None, new: MessageStatus, expected: MessageStatus) -> None:
    assert advance(current, new) is expected


@pytest.mark.parametrize("arrivals", list(itertools.permutations([S.SENT, S.DELIVERED, S.READ, S.PLAYED])))
def test_any_arrival_order_ends_at_the_highest_and_never_goes_back(arrivals: tuple[MessageStatus, ...]) -> None:
    tracked: MessageStatus | None = S.ACCEPTED
    seen = []
    for status in arrivals:
        tracked = advance(tracked, status)
        seen.append(tracked)
    assert [s.rank for s in seen] == sorted(s.rank for s in seen)
    assert tracked is S.PLAYED


@pytest.mark.parametrize("arrivals", list(itertools.permutations([S.SENT, S.DELIVERED, S.READ, S.FAILED])))
def test_failed_anywhere_in_the_sequence_wins_and_sticks(arrivals: tuple[MessageStatus, ...]) -> None:
    tracked: MessageStatus | None = None
    failed_seen = False
    for status in arrivals:
        tracked = advance(tracked, status)
        failed_seen = failed_seen or status is S.FAILED
        assert (tracked is S.FAILED) == failed_seen
    assert tracked is S.FAILED


def test_duplicates_are_not_advances() -> None:
    assert is_advance(None, S.SENT)
    assert is_advance(S.SENT, S.DELIVERED)
    assert not is_advance(S.DELIVERED, S.DELIVERED)
    assert not is_advance(S.READ, S.DELIVERED)
    assert not is_advance(S.FAILED, S.READ)
