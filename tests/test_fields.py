"""The field checks the decoders share."""

from __future__ import annotations

import pytest

from trio_kad._errors import ProtocolError
from trio_kad._fields import check_id, check_uint, fail, id_field


def test_fail_names_the_request() -> None:
    with pytest.raises(ProtocolError) as caught:
        fail("bad", 7)
    assert caught.value.request_id == 7


@pytest.mark.parametrize("value", [None, b"x" * 31, b"x" * 33, "x" * 32, bytearray(32)])
def test_id_field_wants_32_bytes(value: object) -> None:
    assert id_field({"key": b"k" * 32}, "key", 1) == b"k" * 32
    with pytest.raises(ProtocolError, match="'key' must be 32 bytes"):
        id_field({"key": value}, "key", 1)


def test_encode_checks_refuse_what_cannot_be_sent() -> None:
    assert check_uint(5, 0, 9, "n") == 5 and check_id(b"k" * 32, "id") == b"k" * 32
    for value in (True, -1, 10, 1.0):
        with pytest.raises(ValueError, match=r"n must be an int in 0\.\.9"):
            check_uint(value, 0, 9, "n")
    with pytest.raises(ValueError, match="id must be 32 bytes"):
        check_id(b"k" * 31, "id")
