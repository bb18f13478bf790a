"""A transport's memory of the contacts it has read and written, both ways; bounded.

The same contacts travel in reply after reply (a lookup's peers know each
other, and a routing table sends the same ones again and again), so the codec
need not validate, build or encode each of them every time. ``ContactCache``
remembers, for whoever owns it (one per transport, never one per process), the
contacts decoded from exact wire triples and the wire encoding of contacts
sent. It decides only what is remembered: what is valid stays the codec's
business, passed in as the function to call on a miss. Pure code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._ids import Contact

__all__ = ["DEFAULT_CONTACT_CACHE_SIZE", "ContactCache"]

DEFAULT_CONTACT_CACHE_SIZE = 4096
"""How many contacts a ``ContactCache`` remembers each way, unless told otherwise."""


class ContactCache:
    """Contacts recently decoded (by their exact wire triple) and encoded (that very object).

    A hit is exactly what a miss would have produced: a decoded triple is
    looked up only when its types are ``(bytes, str, int)`` (1 == 1.0 == True
    would otherwise find port 1 for a float or a bool), and only triples that
    passed validation are ever remembered; an encoding is kept with the very
    contact object it was made from, which is immutable. Each way holds at
    most ``limit`` contacts and is emptied when full: crude, but O(1) and never
    wrong, and a peer sending random contacts only empties it, costing time.
    Two caches share nothing.
    """

    __slots__ = ("_decoded", "_encoded", "_limit")

    def __init__(self, limit: int = DEFAULT_CONTACT_CACHE_SIZE) -> None:
        if type(limit) is not int or limit < 1:
            raise ValueError("limit must be a positive int")
        self._limit = limit
        self._decoded: dict[tuple[bytes, str, int], Contact] = {}
        # Keyed by node id (bytes cache their hash; a Contact's __hash__ is
        # Python code), holding the contact the encoding was made from: a hit
        # is that very object, never merely an equal one.
        self._encoded: dict[bytes, tuple[Contact, bytes]] = {}

    @property
    def limit(self) -> int:
        """Most contacts remembered each way."""
        return self._limit

    def __len__(self) -> int:
        """Contacts remembered, both ways together (at most ``2 * limit``)."""
        return len(self._decoded) + len(self._encoded)

    def clear(self) -> None:
        """Forget everything."""
        self._decoded.clear()
        self._encoded.clear()

    def decode_all(
        self, items: Iterable[Any], request_id: int, decode: Callable[[object, int], Contact]
    ) -> tuple[Contact, ...]:
        """The contacts ``items`` stand for: remembered ones, else ``decode(item, request_id)``.

        ``decode`` validates (raising for an invalid item) and builds one contact.
        """
        decoded = self._decoded
        known = decoded.get
        contacts = []
        for item in items:
            if type(item) is list and len(item) == 3:
                node_id, host, port = item
                if type(node_id) is bytes and type(host) is str and type(port) is int:
                    contact = known((node_id, host, port))
                    if contact is not None:
                        contacts.append(contact)
                        continue
            contact = decode(item, request_id)
            if len(decoded) >= self._limit:
                decoded.clear()
            decoded[(contact.node_id, contact.host, contact.port)] = contact
            contacts.append(contact)
        return tuple(contacts)

    def encode_all(
        self, contacts: Iterable[Contact], encode: Callable[[Contact], bytes], parts: list[bytes]
    ) -> None:
        """Append each contact's wire encoding to ``parts``: remembered, else ``encode(contact)``.

        ``encode`` validates (raising for an invalid contact) and encodes one contact.
        """
        encoded = self._encoded
        known = encoded.get
        for contact in contacts:
            try:
                entry = known(contact.node_id)
            except (AttributeError, TypeError):
                entry = None  # not a Contact, or an unhashable id: encode refuses it
            if entry is not None and entry[0] is contact:
                parts.append(entry[1])
                continue
            data = encode(contact)
            if len(encoded) >= self._limit:
                encoded.clear()
            encoded[contact.node_id] = (contact, data)
            parts.append(data)
