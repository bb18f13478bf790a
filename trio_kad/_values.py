"""What cbor2 may do with CBOR bytes a stranger chose: the semantic-tag policy.

Two kinds of CBOR arrive from peers. A frame (``load_frame_item``) carries no
tags at all, so every tag is refused before cbor2's own decoders run. A stored
value (``decode_value``) is the setter's data and may carry any tag, except
that two of them would make cbor2 run a parser on the stranger's bytes, so
those stay ``cbor2.CBORTag``. Pure code.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, NoReturn

import cbor2

from ._errors import ProtocolError
from ._records import value_fits

__all__ = ["acceptable_value", "decode_value", "load_frame_item", "well_formed_value"]

# The deepest legitimate item is a field of a contact: map -> "nodes" array ->
# contact array -> field, at depth 3 (cbor2 counts the top item as depth 0).
# One level of slack lets a later revision add a nested optional field.
_MAX_DEPTH = 4

# Semantic tags that cbor2 6.3 decodes by itself (found by probing every tag
# below 2**16 and a few larger ones). Among them: 2/3 bignums (CPU cost), 28/29
# shared references (cycles), 35 regex (compiled!), 36 MIME (parsed), 258 sets,
# 0/1 datetimes, 256/25 string references, 55799 self-describe.
_CBOR2_BUILTIN_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100,
    256, 258, 260, 261, 1004, 43000, 55799,
)  # fmt: skip


class _RefusedTag(ValueError):
    """Raised inside cbor2 for any semantic tag; becomes a ProtocolError."""


def _refuse_tag(*_args: object) -> NoReturn:
    raise _RefusedTag("semantic tags are not allowed")


class _RefuseEveryTag(dict[int, Callable[..., Any]]):
    """cbor2's ``semantic_decoders`` override: every tag maps to a refusal.

    cbor2 consults this mapping before its built-in decoders, so the built-ins
    never run. The known built-ins are listed explicitly and ``__missing__``
    covers any tag a later cbor2 may add a decoder for.
    """

    def __missing__(self, tag: int) -> Callable[..., Any]:
        return _refuse_tag


_SEMANTIC_DECODERS = _RefuseEveryTag(dict.fromkeys(_CBOR2_BUILTIN_TAGS, _refuse_tag))


def _keep_tag(tag: int) -> Callable[[object, bool], cbor2.CBORTag]:
    def keep(value: object, _immutable: bool) -> cbor2.CBORTag:
        return cbor2.CBORTag(tag, value)

    return keep


# A user's value may carry any tag; these two would make cbor2 run a parser
# (re.compile, the email package) on bytes a stranger chose, so they stay tags.
_INERT_TAGS: dict[int, Callable[..., Any]] = {35: _keep_tag(35), 36: _keep_tag(36)}


def decode_value(data: bytes) -> Any:
    """A stored value (the setter's CBOR bytes) as Python data.

    Honours the semantic tags a user may legitimately store (datetimes,
    bignums, decimals, sets, shared references, ...) but never compiles a
    regular expression (tag 35) or parses a MIME message (tag 36): those come
    back as ``cbor2.CBORTag``. Raises ``ValueError`` for bytes that are not
    exactly one CBOR item.
    """
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, semantic_decoders=_INERT_TAGS).decode()
    except Exception as exc:
        raise ValueError("stored value is not valid CBOR") from exc
    if stream.tell() != len(data):
        raise ValueError("stored value has trailing bytes")
    return value


def well_formed_value(value: bytes) -> bool:
    """Could a setter have encoded ``value``? Exactly one CBOR item (``decode_value`` takes it).

    A node refuses any other value at STORE time (``MALFORMED``), so it never
    serves one, and a reader takes one for a miss.
    """
    try:
        decode_value(value)
    except ValueError:
        return False
    return True


def acceptable_value(value: bytes, max_value_size: int) -> bool:
    """Could a setter have made ``value``? Well formed and within the size rule."""
    return value_fits(value, max_value_size) and well_formed_value(value)


def load_frame_item(payload: bytes) -> object:
    """Exactly one CBOR item of a frame, with every dangerous feature refused.

    No tags, no indefinite lengths, no duplicate keys, no nesting deeper than a
    frame needs. Raises ``ProtocolError`` (only that) otherwise.
    """
    stream = io.BytesIO(payload)
    try:
        item = cbor2.CBORDecoder(
            stream,
            tag_hook=_refuse_tag,
            semantic_decoders=_SEMANTIC_DECODERS,
            max_depth=_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        ).decode()
    except Exception as exc:
        # cbor2 is handed hostile bytes: whatever it raises (CBORDecodeError,
        # ValueError, OverflowError, RecursionError, MemoryError, ...) is the
        # peer's fault, and the message stays generic on purpose.
        raise ProtocolError("frame is not acceptable CBOR") from exc
    if stream.tell() != len(payload):
        raise ProtocolError("trailing bytes after the CBOR map")
    return item
