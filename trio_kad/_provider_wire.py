"""The provider-set messages as CBOR map entries, both ways (docs/protocol.md, "Provider sets").

``_encode`` and ``_decode`` register these beside their own message types;
a body encoder returns ``(type item, entries, entry bytes)`` as theirs do,
with the same canonical layout (definite lengths, shortest heads, keys in
the documented order), here written through cbor2. The contact codec is
passed in so this module depends on neither of them. Pure code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2

from ._address import MAX_HOST_LENGTH, valid_host
from ._fields import check_id, check_uint
from ._fields import fail as _fail
from ._fields import id_field as _id_field
from ._ids import ID_BYTES, Contact
from ._messages import (
    MAX_CONTACTS,
    MAX_PROVIDER_ENTRIES,
    MAX_TTL,
    AddProvider,
    GetProviders,
    ProviderEntry,
    Providers,
    StoreProviders,
)

__all__ = [
    "PROVIDER_REQUEST_DECODERS",
    "PROVIDER_REQUEST_ENCODERS",
    "decode_providers",
    "encode_providers",
]

_BodyBytes = tuple[bytes, int, bytes]

_ADD_PROVIDER = cbor2.dumps("add_provider")
_GET_PROVIDERS = cbor2.dumps("get_providers")
_STORE_PROVIDERS = cbor2.dumps("store_providers")
_PROVIDERS = cbor2.dumps("providers")
_KEY = cbor2.dumps("key")
_SERVICE_PORT = cbor2.dumps("service_port")
_ENTRIES = cbor2.dumps("entries")
_NODES = cbor2.dumps("nodes")


def _entry_item(entry: ProviderEntry) -> list[Any]:
    if type(entry) is not ProviderEntry:
        raise ValueError(f"not a ProviderEntry: {entry!r}")
    if not valid_host(entry.host):
        raise ValueError(f"a provider host must be 1..{MAX_HOST_LENGTH} printable ASCII characters")
    return [
        check_id(entry.node_id, "provider id"),
        entry.host,
        check_uint(entry.port, 1, 65535, "provider port"),
        check_uint(entry.age, 0, MAX_TTL, "provider age"),
        check_uint(entry.ttl, 0, MAX_TTL, "provider ttl"),
    ]


def _entries(entries: tuple[ProviderEntry, ...], low: int) -> bytes:
    if not low <= len(entries) <= MAX_PROVIDER_ENTRIES:
        raise ValueError(f"{low}..{MAX_PROVIDER_ENTRIES} provider entries per message")
    return _ENTRIES + cbor2.dumps([_entry_item(entry) for entry in entries])


def _encode_add(body: AddProvider) -> _BodyBytes:
    key = cbor2.dumps(check_id(body.key, "add_provider key"))
    port = cbor2.dumps(check_uint(body.port, 1, 65535, "service port"))
    return _ADD_PROVIDER, 2, _KEY + key + _SERVICE_PORT + port


def _encode_get(body: GetProviders) -> _BodyBytes:
    return _GET_PROVIDERS, 1, _KEY + cbor2.dumps(check_id(body.key, "get_providers key"))


def _encode_store(body: StoreProviders) -> _BodyBytes:
    key = cbor2.dumps(check_id(body.key, "store_providers key"))
    return _STORE_PROVIDERS, 2, _KEY + key + _entries(body.entries, 1)


PROVIDER_REQUEST_ENCODERS: dict[type, Callable[[Any], _BodyBytes]] = {
    AddProvider: _encode_add,
    GetProviders: _encode_get,
    StoreProviders: _encode_store,
}
"""Body encoders of the provider requests, by type."""


def encode_providers(body: Providers, encode_contact: Callable[[Contact], bytes]) -> _BodyBytes:
    """A ``providers`` reply's body; ``encode_contact`` is ``_encode``'s."""
    if len(body.contacts) > MAX_CONTACTS:
        raise ValueError(f"a providers reply carries at most {MAX_CONTACTS} contacts")
    count = len(body.contacts)
    placeholder = cbor2.dumps([None] * count)  # its head, then one byte per item
    nodes = placeholder[: len(placeholder) - count] + b"".join(map(encode_contact, body.contacts))
    return _PROVIDERS, 2, _entries(body.entries, 0) + _NODES + nodes


# --- decoding: every field checked, only ProtocolError raised ----------------


def _decode_entry(item: object, request_id: int) -> ProviderEntry:
    if type(item) is not list or len(item) != 5:
        _fail("a provider entry must be [id, host, port, age, ttl]", request_id)
    node_id, host, port, age, ttl = item
    if type(node_id) is not bytes or len(node_id) != ID_BYTES:
        _fail(f"a provider id must be {ID_BYTES} bytes", request_id)
    if not valid_host(host):
        _fail(f"a provider host must be 1..{MAX_HOST_LENGTH} printable ASCII", request_id)
    if type(port) is not int or not 1 <= port <= 65535:
        _fail("a provider port must be an int in 1..65535", request_id)
    for number in (age, ttl):
        if type(number) is not int or not 0 <= number <= MAX_TTL:
            _fail(f"a provider age and ttl must be ints in 0..{MAX_TTL}", request_id)
    return ProviderEntry(node_id, host, port, age, ttl)


def _entries_field(fields: dict[Any, Any], low: int, request_id: int) -> tuple[ProviderEntry, ...]:
    items = fields.get("entries")
    if type(items) is not list or not low <= len(items) <= MAX_PROVIDER_ENTRIES:
        _fail(f"'entries' must be an array of {low}..{MAX_PROVIDER_ENTRIES} entries", request_id)
    return tuple(_decode_entry(item, request_id) for item in items)


def _decode_add(fields: dict[Any, Any], request_id: int) -> AddProvider:
    port = fields.get("service_port")
    if type(port) is not int or not 1 <= port <= 65535:
        _fail("'service_port' must be an int in 1..65535", request_id)
    return AddProvider(_id_field(fields, "key", request_id), port)


def _decode_store(fields: dict[Any, Any], request_id: int) -> StoreProviders:
    key = _id_field(fields, "key", request_id)
    return StoreProviders(key, _entries_field(fields, 1, request_id))


def decode_providers(
    fields: dict[Any, Any],
    request_id: int,
    decode_contact: Callable[[object, int], Contact],
) -> Providers:
    """A ``providers`` reply; ``decode_contact`` is ``_decode``'s."""
    entries = _entries_field(fields, 0, request_id)
    items = fields.get("nodes")
    if type(items) is not list or len(items) > MAX_CONTACTS:
        _fail(f"'nodes' must be an array of at most {MAX_CONTACTS} contacts", request_id)
    return Providers(entries, tuple(decode_contact(item, request_id) for item in items))


PROVIDER_REQUEST_DECODERS: dict[str, Callable[[dict[Any, Any], int], Any]] = {
    "add_provider": _decode_add,
    "get_providers": lambda fields, request_id: GetProviders(_id_field(fields, "key", request_id)),
    "store_providers": _decode_store,
}
"""Body decoders of the provider requests, by type name."""
