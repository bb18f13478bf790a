"""Exceptions a user of trio-kad can catch and act on."""

from __future__ import annotations

from typing import NoReturn


class DhtError(Exception):
    """Base class of every error trio-kad raises on purpose."""


class BootstrapError(DhtError):
    """No peer given to join through answered."""


class StoreError(DhtError):
    """No node (not even the local one) accepted a value."""


class QuorumError(DhtError):
    """A get with a quorum found the key, but fewer distinct holders than asked returned one value.

    ``agreed`` is the most holders that returned the same value, ``quorum`` the
    number asked for.
    """

    def __init__(self, agreed: int, quorum: int) -> None:
        holders = "holder" if agreed == 1 else "holders"
        super().__init__(f"only {agreed} {holders} agreed on the value; the quorum is {quorum}")
        self.agreed = agreed
        self.quorum = quorum


class TransportError(DhtError):
    """A peer could not be reached, or closed the connection before replying."""


class PeerMisbehaved(TransportError):
    """A peer broke the protocol: it answered with garbage, an oversized or unexpected frame."""


class ProtocolError(DhtError):
    """Bytes received from the network are not a valid trio-kad message.

    ``request_id`` is set when the frame was readable far enough to know which
    request it belonged to, so the receiver can still send an error reply.
    """

    def __init__(self, message: str, *, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class RemoteError(DhtError):
    """A peer answered a request with an error reply."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"peer error {code}: {message}")
        self.code = code
        self.message = message


class DataDirError(DhtError):
    """The data_dir is corrupt, foreign, or unusable (the message names the path)."""


class StaleSequence(DhtError):
    """The storing nodes hold a newer signed record (or another value at the same seq).

    ``seq`` is the highest seq they said they hold; publish again with a higher one.
    """

    def __init__(self, seq: int | None) -> None:
        super().__init__(f"the storing nodes hold seq {seq}; use a higher seq")
        self.seq = seq


class CasMismatch(DhtError):
    """A compare-and-swap failed: the seq held is not the one ``cas`` named.

    ``seq`` is the seq the storing nodes hold (``None``: they hold no record).
    """

    def __init__(self, seq: int | None) -> None:
        held = "no record" if seq is None else f"seq {seq}"
        super().__init__(f"compare-and-swap failed: the storing nodes hold {held}")
        self.seq = seq


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one exception inside ``group`` as itself; the group when it holds several."""
    # Background tasks never raise, so a group here wraps the caller's own
    # exception (or a startup error): hand it back as itself, not as a group.
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    if len(leaves) == 1:
        raise leaves[0]
    raise group
