"""The ban list: bans until a time, bounded, never lifted early."""

from __future__ import annotations

import pytest

from trio_kad._bans import BanList

A, B, C = (bytes([n]) * 32 for n in (1, 2, 3))


def test_a_ban_holds_until_its_end_and_is_then_forgotten() -> None:
    bans = BanList(4)
    assert bans.add(A, 10.0, now=0.0)
    assert bans.banned(A, 9.9) and bans.refuses(A, 9.9)
    assert not bans.banned(A, 10.0)
    assert len(bans) == 1
    assert not bans.refuses(A, 10.0)  # and forgets it
    assert len(bans) == 0
    assert not bans.refuses(B, 0.0)


def test_banning_again_moves_the_end() -> None:
    bans = BanList(4)
    bans.add(A, 10.0, now=0.0)
    bans.add(A, 5.0, now=1.0)
    assert not bans.banned(A, 6.0)
    bans.add(A, 20.0, now=2.0)
    assert bans.banned(A, 19.0)


def test_a_full_list_takes_no_new_ban_and_lifts_no_running_one() -> None:
    bans = BanList(2)
    assert bans.add(A, 10.0, now=0.0) and bans.add(B, 20.0, now=0.0)
    assert not bans.add(C, 30.0, now=5.0)
    assert bans.banned(A, 5.0) and bans.banned(B, 5.0) and not bans.banned(C, 5.0)
    assert bans.add(A, 40.0, now=5.0)  # a banned id may always be banned again
    # Once a ban has expired, it makes room.
    assert bans.add(C, 30.0, now=21.0)
    assert bans.banned(C, 29.0) and bans.banned(A, 29.0) and not bans.banned(B, 21.0)


@pytest.mark.parametrize("limit", [0, -1])
def test_the_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="max_bans"):
        BanList(limit)
