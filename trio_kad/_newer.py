"""Which of two publications of a plain pair wins, so that values converge (issue 16).

Every plain pair carries ``published``: when the ``set`` that made it ran, in
milliseconds since the Unix epoch by its publisher's clock, carried unchanged
by replication, republishing, handoff and caching. Holders keep the newer
publication, readers prefer it, and a publisher whose pair most of the k
closest say is superseded stops republishing it. So after a later ``set``
reads return the later value and never flip back: last writer wins, by the
publishers' clocks (a publisher whose clock runs ahead wins over a later
``set`` from one whose clock runs behind, by the difference). Pure code.
"""

from __future__ import annotations

from ._duties import among_closest
from ._records import Record
from ._routing import RoutingTable

FUTURE_TOLERANCE_MS = 3_600_000
"""How far ahead of a holder's clock a ``published`` may be: one hour.

A pair dated further ahead is refused, so a writer cannot date a pair years
ahead and make it outlast every later ``set`` of the key; honest clocks are
seconds apart.
"""

MIN_SUPERSEDED = 2
"""Fewest SUPERSEDED answers that make a publisher stop republishing a pair."""


def newer(published: int, value: bytes, held_published: int, held_value: bytes) -> bool:
    """Does the pair ``(published, value)`` supersede the held one?

    A later publication wins; at equal times the greater value bytes win, so
    every holder settles on the same pair whatever order copies arrive in.
    The same pair is not newer than itself.
    """
    return (published, value) > (held_published, held_value)


def from_future(published: int, now_ms: int) -> bool:
    """Is ``published`` further ahead of ``now_ms`` than ``FUTURE_TOLERANCE_MS``?"""
    return published > now_ms + FUTURE_TOLERANCE_MS


def superseded(refusals: int, answered: int) -> bool:
    """Do ``refusals`` SUPERSEDED answers among ``answered`` replies prove a newer pair is out?

    The rule for a publisher to stop republishing its pair and drop its copy:
    at least ``MIN_SUPERSEDED`` of the k closest it reached said SUPERSEDED,
    and they are more than half of those that answered. One lying peer alone
    can never make an honest publisher's pair vanish; a publisher that hears
    no majority keeps republishing, and holders that hold its pair keep it.
    """
    return refusals >= MIN_SUPERSEDED and 2 * refusals > answered


def trusted_locally(record: Record, table: RoutingTable) -> bool:
    """Can a read return the local copy ``record`` without asking the network?

    Yes for a copy held among the k closest to its key (by the table): every
    later ``set`` stored there, and replication brings a newer pair to one it
    missed. A cached copy may be superseded, and so may any copy of a node
    outside the k closest (its own pair, or one it held before nearer nodes
    joined): a read then looks on the network and returns the newer of what it
    finds and the local copy.
    """
    if record.cached:
        return False
    k = table.k
    return among_closest(table.own_id, record.key, table.closest(record.key, k), k)
