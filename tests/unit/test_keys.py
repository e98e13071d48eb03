"""The key layout: every script's keys in one hash slot, the shards spread over a cluster's masters."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import key_slot

from broker import keys

SLOTS = 16384


def _slot(key: str) -> int:
    return key_slot(key.encode())


def _even_split(masters: int) -> list[range]:
    """The slot ranges ``valkey-cli --cluster create`` gives `masters` masters (its own arithmetic)."""
    per_master = SLOTS / masters
    ranges, first, cursor = [], 0, 0.0
    for i in range(masters):
        last = round(cursor + per_master - 1)
        if last > SLOTS or i == masters - 1:
            last = SLOTS - 1
        last = max(last, first)
        ranges.append(range(first, last + 1))
        first, cursor = last + 1, cursor + per_master
    return ranges


def _first_tag_near_the_middle(shard: int) -> str:
    width = SLOTS // keys.SHARDS
    middle = shard * width + width // 2
    n = 0
    while abs(_slot(f"s{shard}.{n}") - middle) > 16:
        n += 1
    return f"s{shard}.{n}"


def test_shard_tags_are_the_first_near_the_middle_of_their_slot_range() -> None:
    # the rule keys.SHARD_TAGS was written out with; changing it would orphan every stored task
    assert keys.SHARDS == 16
    assert tuple(_first_tag_near_the_middle(shard) for shard in range(keys.SHARDS)) == keys.SHARD_TAGS


def test_each_shard_hashes_into_its_own_slot_range() -> None:
    width = SLOTS // keys.SHARDS
    for shard, tag in enumerate(keys.SHARD_TAGS):
        assert _slot(f"{{{tag}}}") // width == shard, tag


@pytest.mark.parametrize("masters", range(1, 17))
def test_an_even_slot_split_gives_every_master_its_share_of_shards(masters: int) -> None:
    ranges = _even_split(masters)
    owners = Counter(
        next(i for i, slots in enumerate(ranges) if _slot(stream) in slots) for stream in keys.CHANGES_STREAMS
    )
    counts = [owners[i] for i in range(masters)]
    assert max(counts) - min(counts) <= 1, counts


def test_every_key_of_a_task_is_in_the_slot_of_its_record() -> None:
    # the store's compare-and-set announces on the changes stream; the outbox's scripts touch the
    # hook state and the due set: each is one script, so one slot on a cluster
    for n in range(2000):
        task_id = str(1_790_000_000_000_000 + n * 7919)
        slot = _slot(keys.task_record(task_id))
        for key in (
            keys.task_blob(task_id, "image0"),
            keys.changes_stream(task_id),
            keys.finishing_stream(task_id),
            keys.hook_state(task_id),
            keys.hooks_due(task_id),
            keys.live_tasks(task_id),
            keys.stored_images(task_id),
        ):
            assert _slot(key) == slot, (task_id, key)
        assert keys.shard_of_key(keys.task_record(task_id)) == keys.task_shard(task_id)


def test_task_ids_spread_evenly_over_the_shards() -> None:
    # snowflake-like ids, as the web draws them
    ids = [str((1_790_000_000_000 + n) << 22 | (n % 4096)) for n in range(32_000)]
    per_shard = Counter(keys.task_shard(task_id) for task_id in ids)
    assert sorted(per_shard) == list(range(keys.SHARDS))
    assert max(per_shard.values()) < 1.1 * len(ids) / keys.SHARDS


def test_shards_are_the_same_in_every_process_and_release() -> None:
    # a stable hash (not Python's salted hash()): every process must find a task where it was put
    assert keys.task_shard("1790000000000000001") == 8
    assert keys.account_shard("1200000000000000001") == 2
    assert keys.task_record("1790000000000000001") == "mjb:{s8.260}:task:1790000000000000001"


def test_an_accounts_events_all_go_to_the_stream_of_its_shard() -> None:
    assert keys.events_stream("a1") == keys.EVENTS_STREAMS[keys.account_shard("a1")]
    streams = {keys.events_stream(f"acct{n}") for n in range(200)}
    assert streams == set(keys.EVENTS_STREAMS)


def test_a_cluster_reads_each_shard_alone_and_one_server_all_at_once() -> None:
    streams = keys.CHANGES_STREAMS
    assert keys.read_groups(streams, mode="single") == [list(streams)]
    assert keys.read_groups(streams, mode="sentinel") == [list(streams)]
    assert keys.read_groups(streams, mode="cluster") == [[stream] for stream in streams]


def test_the_task_record_pattern_matches_records_only() -> None:
    import fnmatch

    pattern = keys.TASK_RECORDS_MATCH
    assert fnmatch.fnmatchcase(keys.task_record("123"), pattern)
    for other in (keys.task_blob("123", "x"), keys.hook_state("123"), keys.changes_stream("123")):
        assert not fnmatch.fnmatchcase(other, pattern), other


def test_keys_outside_the_shards_have_no_shard() -> None:
    assert keys.shard_of_key(keys.account_waiting("a1")) is None
    assert keys.shard_of_key(keys.METRICS) is None
