"""Frames on the wire: a 4-byte length prefix, then one CBOR map (docs/protocol.md).

Pure code (no trio, no sockets), in the sans-I/O style of h11: ``encode_frame``
turns a frame into bytes, ``FrameReader`` splits a byte stream into payloads,
``decode_frame`` turns one payload into a frame. Everything received is
hostile until proven otherwise: ``decode_frame`` raises nothing but
``ProtocolError``, whatever the bytes.

This module is the codec's face; the parts live beside it, one idea each:

- ``_framing``: the length prefix and ``FrameReader``;
- ``_encode``: the hand-written CBOR encoder;
- ``_decode``: any payload read through cbor2, validated field by field;
- ``_decode_fast``: the frequent frames read without cbor2;
- ``_values``: which CBOR tags cbor2 may honour, in frames (none) and in stored values;
- ``_contacts``: ``ContactCache``, the contacts one transport has read and written.

The codec keeps no state of its own. A transport that wants contacts
remembered (the same ones come back in reply after reply) holds one
``ContactCache`` for its whole life, one per transport and so one per node,
never one per process, and passes it to every call::

    contacts = ContactCache()
    data = encode_reply(request_id, local_id, body, contacts)
    frame = decode_frame(payload, contacts)

Without one (``contacts=None``, the default) every contact is validated and
encoded each time: the same frames, only slower for ``nodes`` replies.
"""

from __future__ import annotations

from ._address import MAX_HOST_LENGTH
from ._contacts import ContactCache
from ._decode import UnsupportedFrameError, decode_general
from ._decode_fast import decode_usual
from ._encode import encode_frame, encode_reply
from ._framing import LENGTH_PREFIX_SIZE, FrameReader
from ._messages import MAX_CONTACTS, MAX_ERROR_MESSAGE_LENGTH, MAX_REQUEST_ID, Frame
from ._values import decode_value

__all__ = [
    "LENGTH_PREFIX_SIZE",
    "MAX_CONTACTS",
    "MAX_ERROR_MESSAGE_LENGTH",
    "MAX_HOST_LENGTH",
    "MAX_REQUEST_ID",
    "ContactCache",
    "FrameReader",
    "UnsupportedFrameError",
    "decode_frame",
    "decode_value",
    "encode_frame",
    "encode_reply",
]


def decode_frame(payload: bytes, contacts: ContactCache | None = None) -> Frame:
    """The frame in ``payload`` (the bytes after the length prefix).

    Raises ``ProtocolError`` (only that, for any input) when the payload is not
    exactly one valid frame. Its ``request_id`` is set when the map carried a
    valid ``"id"``, so the receiver can still answer with an error reply;
    ``UnsupportedFrameError`` marks another version or an unknown message type.
    ``contacts``, the receiver's own cache, spares validating and building
    again the contacts of a ``nodes`` reply it has read before.
    """
    usual = decode_usual(payload)
    return decode_general(payload, contacts) if usual is None else usual
