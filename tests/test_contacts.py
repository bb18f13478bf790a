"""``ContactCache`` (``_contacts``): remembered contacts change nothing observable.

A cache gives back exactly what validating, building and encoding again
would; it stays bounded whatever a peer sends; two caches share nothing; and
``Contact`` stays a plain immutable value however often it is encoded.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire import KEY, SENDER, ids

from trio_kad._codec import MAX_CONTACTS, ContactCache, decode_frame, encode_frame, encode_reply
from trio_kad._errors import ProtocolError
from trio_kad._ids import Contact
from trio_kad._messages import Nodes, ReplyFrame


def nodes_payload(*items: object) -> bytes:
    return cbor2.dumps({"v": 1, "t": "nodes", "id": 7, "from": SENDER, "nodes": list(items)})


def decoded_contacts(payload: bytes, contacts: ContactCache | None) -> tuple[Contact, ...]:
    body = decode_frame(payload, contacts).body
    assert isinstance(body, Nodes)
    return body.contacts


def test_known_contact_is_reused() -> None:
    cache = ContactCache()
    node_id = bytes(range(1, 33))
    first = decoded_contacts(nodes_payload([node_id, "10.0.0.1", 4000]), cache)
    again = decoded_contacts(nodes_payload([node_id, "10.0.0.1", 4000]), cache)
    assert first == again == (Contact(node_id, "10.0.0.1", 4000),)
    assert again[0] is first[0]


def test_without_a_cache_nothing_is_remembered() -> None:
    payload = nodes_payload([KEY, "10.0.0.1", 4000])
    first, again = decoded_contacts(payload, None), decoded_contacts(payload, None)
    assert first == again
    assert again[0] is not first[0]


def test_two_caches_share_nothing() -> None:
    one, other = ContactCache(), ContactCache()
    payload = nodes_payload([KEY, "10.0.0.1", 4000])
    from_one = decoded_contacts(payload, one)
    assert len(one) == 1 and len(other) == 0
    from_other = decoded_contacts(payload, other)
    assert from_other == from_one and from_other[0] is not from_one[0]
    assert decoded_contacts(payload, one)[0] is from_one[0]
    assert decoded_contacts(payload, other)[0] is from_other[0]
    encode_reply(1, SENDER, Nodes(from_one), one)
    assert (len(one), len(other)) == (2, 1)
    one.clear()
    assert (len(one), len(other)) == (0, 1)
    assert decoded_contacts(payload, other)[0] is from_other[0]


@pytest.mark.parametrize(
    "port",
    [True, 1.0, cbor2.CBORSimpleValue(1)],
    ids=["bool", "float", "simple value"],
)
def test_values_equal_to_a_known_port_are_still_refused(port: object) -> None:
    # True == 1.0 == simple(1) == 1, with equal hashes: a triple lookup alone
    # would take them for the known contact's port 1.
    cache = ContactCache()
    node_id = bytes(range(2, 34))
    assert decoded_contacts(nodes_payload([node_id, "h", 1]), cache) == (Contact(node_id, "h", 1),)
    with pytest.raises(ProtocolError):
        decode_frame(nodes_payload([node_id, "h", port]), cache)


def test_near_misses_of_a_known_contact_are_validated() -> None:
    cache = ContactCache()
    node_id = bytes(range(3, 35))
    decoded_contacts(nodes_payload([node_id, "h", 1]), cache)
    for bad in (
        [node_id, b"h", 1],
        [node_id, "h", 1, 1],
        [node_id, "h"],
        (node_id, "h", [1]),
        [[node_id], "h", 1],
        {"0": node_id},
        [node_id[:31], "h", 1],
    ):
        with pytest.raises(ProtocolError):
            decode_frame(nodes_payload(bad), cache)


def test_remembered_contacts_are_bounded() -> None:
    cache = ContactCache()
    limit = cache.limit
    for start in range(0, limit + 300, MAX_CONTACTS):
        items = [
            [n.to_bytes(32, "big"), "h", 1]
            for n in range(start, min(start + MAX_CONTACTS, limit + 300))
        ]
        assert len(decoded_contacts(nodes_payload(*items), cache)) == len(items)
        assert len(cache) <= limit


@settings(max_examples=50)
@given(st.lists(st.lists(st.tuples(ids, st.sampled_from("abc"), st.integers(1, 9)), max_size=20)))
def test_a_peer_sending_random_contacts_only_empties_the_cache(
    replies: list[list[tuple[bytes, str, int]]],
) -> None:
    # Both ways: contacts read from a peer, then passed on in our own replies.
    cache = ContactCache(limit=16)
    for triples in replies:
        contacts = decoded_contacts(nodes_payload(*map(list, triples)), cache)
        assert contacts == tuple(Contact(*triple) for triple in triples)
        sent = encode_reply(1, SENDER, Nodes(contacts), cache)
        assert sent == encode_reply(1, SENDER, Nodes(contacts))
        assert len(cache) <= 2 * cache.limit


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_cache_refuses_a_bad_limit(limit: object) -> None:
    with pytest.raises(ValueError):
        ContactCache(limit)  # type: ignore[arg-type]


def test_an_encoding_is_reused_only_for_the_same_contact_object() -> None:
    cache = ContactCache()
    sent = Contact(KEY, "127.0.0.1", 4000)
    moved = Contact(KEY, "127.0.0.2", 4001)  # same id, another address
    first = encode_reply(1, SENDER, Nodes((sent,)), cache)
    assert encode_reply(1, SENDER, Nodes((moved,)), cache) == encode_reply(
        1, SENDER, Nodes((moved,))
    )
    assert encode_reply(1, SENDER, Nodes((sent,)), cache) == first
    assert first == encode_reply(1, SENDER, Nodes((sent,)))


def test_invalid_contact_is_refused_every_time_with_a_cache() -> None:
    cache = ContactCache()
    bad = Contact(KEY, "a b", 1)
    for _ in range(2):
        with pytest.raises(ValueError):
            encode_reply(1, SENDER, Nodes((bad,)), cache)
    with pytest.raises(ValueError):
        encode_reply(1, SENDER, Nodes(((KEY, "h", 1),)), cache)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_reply(1, SENDER, Nodes((Contact([1], "h", 1),)), cache)  # type: ignore[arg-type]
    assert len(cache) == 0


def test_encoding_a_contact_changes_nothing_visible() -> None:
    sent = Contact(KEY, "127.0.0.1", 4000)
    fresh = Contact(KEY, "127.0.0.1", 4000)
    before = (hash(sent), repr(sent), sent.address)
    frame = ReplyFrame(1, SENDER, Nodes((sent, sent)))
    cache = ContactCache()
    assert encode_frame(frame) == encode_frame(frame, cache) == encode_frame(frame, cache)
    assert (hash(sent), repr(sent), sent.address) == before
    assert sent == fresh and fresh == sent
    assert hash(sent) == hash(fresh)
    assert decode_frame(encode_frame(frame)[4:]) == ReplyFrame(1, SENDER, Nodes((fresh, fresh)))
    assert decode_frame(encode_frame(frame)[4:], cache) == ReplyFrame(
        1, SENDER, Nodes((fresh, fresh))
    )


def test_contact_is_an_immutable_value() -> None:
    contact = Contact(KEY, "h", 1)
    assert [field.name for field in dataclasses.fields(Contact)] == ["node_id", "host", "port"]
    assert contact == Contact(node_id=KEY, host="h", port=1)
    assert contact != Contact(KEY, "h", 2)
    same_fields: object = (KEY, "h", 1)
    assert contact != same_fields
    assert hash(contact) == hash((KEY, "h", 1))
    assert contact.address == ("h", 1)
    assert repr(contact) == f"Contact({KEY.hex()[:12]}…@h:1)"
    for name in ("node_id", "host", "port", "_encoded", "other"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(contact, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del contact.port
    assert dataclasses.replace(contact, port=2) == Contact(KEY, "h", 2)


def test_contact_copies_and_pickles() -> None:
    contact = Contact(KEY, "h", 1)
    encode_frame(ReplyFrame(1, SENDER, Nodes((contact,))), ContactCache())
    for clone in (copy.copy(contact), copy.deepcopy(contact), pickle.loads(pickle.dumps(contact))):
        assert clone == contact
        assert type(clone) is Contact
