"""Revisions (the hooks' versions) never repeat, even when Redis forgets its last writes."""

from __future__ import annotations

from broker.store import next_revision


def test_a_revision_is_above_the_previous_one_even_with_a_clock_behind() -> None:
    assert next_revision(1_700_000_000_500, 1_700_000_000_000) == 1_700_000_000_501


def test_a_revision_is_at_least_the_clock() -> None:
    assert next_revision(0, 1_700_000_000_000) == 1_700_000_000_000


def test_revisions_written_after_a_rollback_exceed_every_lost_one() -> None:
    # Written before the crash, up to t=1000 ms (three writes in one millisecond included)...
    revisions = [next_revision(0, 990)]
    for now in (995, 1000, 1000, 1000):
        revisions.append(next_revision(revisions[-1], now))
    kept = revisions[1]  # ...the AOF kept only the first two writes; a restart takes seconds
    after = next_revision(kept, 3_000)
    assert after > max(revisions)
