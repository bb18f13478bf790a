"""The message and frame values (``_messages``)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from wire import SENDER

from trio_kad._messages import ERROR_CODES, ErrorCode, Frame, Ping, Pong, ReplyFrame, RequestFrame


@pytest.mark.parametrize(
    "frame",
    [
        RequestFrame(request_id=1, sender_id=SENDER, sender_port=None, body=Ping()),
        ReplyFrame(request_id=1, sender_id=SENDER, body=Pong()),
    ],
)
def test_frames_are_immutable_values(frame: Frame) -> None:
    assert frame == copy.copy(frame) == pickle.loads(pickle.dumps(frame))
    assert hash(frame) == hash(copy.deepcopy(frame))
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.request_id = 2  # type: ignore[misc]
    assert dataclasses.replace(frame, request_id=2).request_id == 2


def test_error_codes_by_their_wire_value() -> None:
    assert len(ERROR_CODES) == len(ErrorCode)
    assert all(ERROR_CODES[code.value] is code for code in ErrorCode)
