"""The lossy proxy's RESP framing (tests/redis_proxy.py): it must know where each command and reply
ends, or it would lose the wrong reply."""

from __future__ import annotations

import pytest
from redis_proxy import evalsha_of, frame_end

PIPELINE = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"


def test_commands_of_a_pipeline_are_framed_one_by_one_even_with_crlf_inside_a_value() -> None:
    first = frame_end(PIPELINE)
    assert first == len(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
    assert frame_end(PIPELINE, first) == len(PIPELINE)


def test_a_frame_cut_short_is_not_taken_for_a_whole_one() -> None:
    second = PIPELINE[20:]
    for cut in range(len(second)):
        assert frame_end(second[:cut]) is None, second[:cut]


@pytest.mark.parametrize(
    "reply",
    [
        b"+OK\r\n",
        b"-ERR no\r\n",
        b":42\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"$5\r\nhello\r\n",
        b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n",  # nested, as a script's table comes back
        b"%1\r\n+k\r\n:1\r\n",  # a RESP3 map: two frames per entry
    ],
)
def test_each_reply_type_is_framed_whole(reply: bytes) -> None:
    assert frame_end(reply + b"+NEXT\r\n") == len(reply)
    assert frame_end(reply[:-1]) is None


def test_evalsha_of_matches_only_that_script() -> None:
    match = evalsha_of("abc")
    assert match([b"evalsha", b"abc", b"0"])
    assert not match([b"EVALSHA", b"abd", b"0"])
    assert not match([b"GET", b"abc"])
