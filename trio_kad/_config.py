"""Tunable parameters of a node, validated once at construction."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from ._address import Scope, listening_scope


@dataclass(frozen=True, slots=True)
class Config:
    """Every size, count, wait and interval a node uses.

    Defaults follow the Kademlia paper (k = 20, alpha = 3, the hour and day
    timers of section 2). Times are in seconds, sizes in bytes.
    """

    k: int = 20
    """Bucket size and replication factor."""
    alpha: int = 3
    """Most RPCs one lookup has in flight at once (strict parallelism)."""
    rpc_timeout: float = 2.0
    """How long one RPC may take, connecting included, before the peer counts as failed."""
    min_rpc_timeout: float = 0.25
    """Shortest wait for a lookup RPC; the wait adapts to the round-trip times seen.

    A lookup gives up on a contact after its smoothed RTT plus the larger of
    four deviations and this (RFC 6298, with Linux's floor on the margin),
    doubled after each timeout and at most ``rpc_timeout``, so a dead contact
    costs a lookup a fraction of a second rather than a full ``rpc_timeout``.
    """
    io_timeout: float = 10.0
    """Deadline for reading or writing one whole frame once it has begun."""
    idle_timeout: float = 60.0
    """A connection with no traffic for this long is closed."""
    max_frame_size: int = 1024 * 1024
    """Largest frame accepted, checked from the length prefix before reading the body."""
    max_value_size: int = 64 * 1024
    """Largest value, measured as its CBOR encoding."""
    max_inbound_connections: int = 512
    """Inbound connections served at once; more are closed on accept."""
    max_outbound_connections: int = 256
    """Outbound connections kept open at once; the least recently used idle one is closed."""
    max_requests_per_connection: int = 64
    """Requests being handled at once for one inbound connection."""
    max_stores_in_flight: int = 256
    """STOREs being handled at once over all connections (each may carry up to
    ``max_frame_size``); more are answered OVERLOADED until some finish."""
    max_records: int = 100_000
    """Records one node stores for the network."""
    max_store_bytes: int = 256 * 1024 * 1024
    """Bytes of values one node stores for the network, all records together."""
    max_records_per_ip: int = 10_000
    """Records one node keeps that were sent by one IP address (the publisher's share)."""
    max_connections_per_ip: int = 128
    """Inbound connections from one IP address at once."""
    request_rate_per_ip: float = 1000.0
    """Requests per second one IP address may send, on average (token bucket)."""
    request_burst_per_ip: int = 2000
    """Requests one IP address may send at once before the rate applies."""
    rate_tracked_ips: int = 2048
    """Remote IPs whose request rate is tracked at once; the least recently seen is forgotten."""
    contact_cache_size: int = 4096
    """Contacts a transport remembers each way (decoded and encoded); emptied when full."""
    descriptor_share: float = 0.4
    """Share of the process's file-descriptor limit that connections we dial may hold.

    Shared by every ``TcpTransport`` of the process: when many nodes live in one
    process each connection costs a descriptor at both ends, and listeners and
    connections from elsewhere need the rest. The least recently used idle
    connection is closed first.
    """
    max_contacts_per_subnet: int = 2
    """Contacts per bucket from one /24 (IPv4) or /48 (IPv6) network (see ``diversity_exempt``)."""
    diversity_exempt: tuple[str, ...] | None = None
    """Networks whose hosts are not subject to ``max_contacts_per_subnet``.

    ``None`` (the default) decides by the address the node listens on:
    127.0.0.0/8 and ::1 on a loopback address (a local test net, every node on
    one host); the private ranges (10/8, 100.64/10, 172.16/12, 192.168/16,
    fc00::/7) on a private address, where a LAN, VPC or container network often
    lies in one /24 and the cap would keep its nodes from knowing each other
    (go-libp2p-kad-dht's LAN DHT has no diversity filter either); nothing on a
    public address or a wildcard. Public contacts stay capped everywhere. Set
    ``()`` on a private node that a proxy on its network exposes to strangers:
    they would all arrive from the proxy's private address.
    """
    per_ip_exempt: tuple[str, ...] | None = None
    """Networks whose hosts are not subject to the per-IP limits.

    ``max_connections_per_ip``, ``request_rate_per_ip`` and ``max_records_per_ip``
    exist so that one remote machine cannot take a node's share of everyone;
    many nodes on one machine (loopback) are expected to talk to each other a lot.
    ``None`` (the default): 127.0.0.1 and ::1 when the node listens on a
    loopback address, nothing otherwise. Only 127.0.0.1: other loopback
    addresses stay limited, so a local test can still play a hostile host.
    """
    ban_duration: float = 600.0
    """A peer that answers with garbage or lies about its id is ignored this long."""
    max_failures: int = 3
    """Consecutive failed RPCs after which a contact is dropped even with no replacement."""
    liveness_window: float = 900.0
    """A contact heard from this recently counts as alive: a full bucket keeps it without a ping.

    15 minutes, as BitTorrent's DHT (BEP 5) treats a node as good.
    """
    replacement_cache_size: int = 20
    """Contacts remembered per bucket to replace ones that fail."""
    bootstrap_timeout: float = 10.0
    """How long joining through the bootstrap peers may take in all."""
    refresh_interval: float = 3600.0
    """tRefresh: a bucket not looked up for this long gets a lookup of a random id in it."""
    replicate_interval: float = 3600.0
    """tReplicate: stored pairs are re-sent to the current k closest nodes this often."""
    republish_interval: float = 86400.0
    """tRepublish: the original publisher re-stores its pairs this often."""
    expire_interval: float = 86400.0
    """tExpire: a pair is dropped this long after its last publication."""
    max_bans: int = 1024
    """Ids remembered as banned; when that many bans are running, further ones are not recorded.

    A ban is never lifted early to make room (that would let whoever can earn
    many bans lift an older one); expired bans make room.
    """
    handoff_queue_size: int = 64
    """Newly seen nodes waiting to be handed the pairs they should hold (paper 2.5).

    When the queue is full (a join storm), further newcomers get their pairs
    from the next replication round instead.
    """
    recent_requesters: int = 32
    """Requesters remembered as just seen, so a burst of requests updates the table once.

    Forgotten all at once when full.
    """
    requester_reseen_interval: float = 1.0
    """A requester asking again within this many seconds, from the same address, is not
    recorded in the routing table again: the table has just seen it."""
    lookup_max_rpcs: int = 200
    """RPCs one lookup may send (per path, see ``disjoint_paths``); then it ends with what it has.

    Peers naming fresh, ever-closer ids could otherwise keep a lookup going
    forever. In a simulated 1,000-node network a lookup sends 21 RPCs (median;
    at most 25), and at most about 70 when half the nodes are silent.
    """
    lookup_max_contacts: int = 160
    """Contacts one lookup keeps on its shortlist (per path); the farthest never asked go first.

    At least ``k``. With ``lookup_max_rpcs`` it bounds what a lookup remembers:
    at most ``lookup_max_contacts + lookup_max_rpcs`` ids per path. A lookup
    in a simulated 1,000-node network learns at most about 115 contacts.
    """
    disjoint_paths: int = 1
    """Disjoint paths per lookup (S/Kademlia, Baumgart and Mies 2007, section 4.4).

    The k closest known contacts are dealt out to this many lookups that never
    ask the same node, so a hostile node on one path cannot mislead the
    others: a get succeeds when any path meets the value, a set stores at the
    k closest found over all paths. At most ``k``.

    1 by default, as measured with ``benchmarks/adversary.py --nodes 1000``
    (1,000 simulated nodes, 200 keys per cell). With no hostile node a fresh
    reader's get costs 7.8 RPCs at d = 1, 14.1 at 2, 27.8 at 4 and 44.7 at 8
    for about the same latency (0.05 s against 0.03 s virtual): more paths
    only add RPCs, and a plain get by a node with a full table, one or two
    RPCs at d = 1, starts alpha RPCs per path at once. With 20 % hostile
    nodes mixing every behaviour a quorum-3 get was right for every key at
    every d (47 RPCs per get at d = 1, 94 at 2), while a quorum-1 get meets a
    lying holder more often the more nodes it asks at once (74.5 % right at
    d = 1, 45 % at 4, 10.5 % at 8). Against routing attacks alone (drop,
    poison, forge; 20 % hostile) a second path does help: 100 % of gets
    right instead of 90 %. Set 2 where that matters more than twice the RPCs.
    """
    rtt_tracked_contacts: int = 512
    """Contacts whose round-trip times are tracked one by one; the least recently used is forgotten.

    Each gets its own RPC timeout and hedge delay; a contact not tracked gets
    the node-wide estimate. A routing table holds about 20 contacts per
    bucket over log2(N / 20) buckets: some 180 at 10,000 nodes, 340 at a
    million, so 512 covers the table and recent lookups' contacts, at about
    200 bytes each.
    """
    handoff_on_exit: bool = False
    """Leaving ``open_dht``'s block normally hands each held pair to the node that takes over.

    That is, for each pair this node is among the k closest to, the closest
    live node that lacks it (the k-th closest other, or the next one if that
    one fails). ``trio-kad serve`` turns it on, so SIGTERM leaves gracefully;
    leaving by an exception or a cancellation hands nothing over.
    """
    handoff_deadline: float = 10.0
    """Seconds the hand-off on exit may take in all; pairs not handed over by then
    are left to the other holders' replication."""
    # --- provider sets (issue 17)
    provider_lifetime: float = 2700.0
    """Seconds a provider entry lives at a holder after its last announcement (45 min).

    Providers are running processes, not stored content: an entry outliving
    its provider sends finders to a dead address. libp2p keeps provider
    records 48 h (re-provided every 22 h) because it announces many content
    ids per peer; BitTorrent's Mainline, which announces one topic per
    torrent like we do, re-announces every 15-30 min. Three re-announce
    intervals: one lost re-announcement costs nothing, and a stopped
    provider is gone within 45 min.
    """
    provider_reannounce_interval: float = 900.0
    """Seconds between two announcements of each topic a node announces while it runs.

    Each is a lookup and k small RPCs per topic; it also brings the entry to
    whichever nodes are now the k closest. Less than ``provider_lifetime``.
    """
    max_providers_per_topic: int = 64
    """Entries one holder keeps per topic; announcements by new providers beyond are refused.

    At most ``MAX_PROVIDER_ENTRIES`` (256), which one reply carries; the
    existing entries keep their places until they expire, so a flood cannot
    push out providers that announced first.
    """
    max_provider_topics: int = 10_000
    """Topics one holder keeps provider sets for."""
    max_providers_per_ip: int = 256
    """Provider entries one holder keeps from one announcing address (IPv4 /24, IPv6 /48).

    Hosts in ``per_ip_exempt`` count toward no per-IP quota.
    """
    max_provider_ids_per_ip: int = 8
    """Distinct node ids one announcing address (IPv4 /24, IPv6 /48) may hold entries under.

    Fresh node ids cost nothing to make: this bounds how many places one
    host can take in one topic, whatever ids it invents.
    """
    # --- watching a key (issue 18)
    watch_renew_interval: float = 60.0
    """Seconds between a watcher's renewals: it looks the key up again and sends LISTEN to the
    k closest it finds, so it follows churn and new nodes within this interval.

    OpenDHT renews every 30 s; each of our renewals is a lookup as well, which
    OpenDHT does not repeat, so we renew half as often and pay about the same.
    """
    watch_listener_ttl: float = 180.0
    """Seconds a holder keeps a listener without a renewal (more than ``watch_renew_interval``).

    Three renewal intervals: two lost renewals in a row do not drop a watcher.
    OpenDHT keeps listeners 10 min; a watcher gone without a word holds a
    slot here for 3 min at most, so limits free up sooner after churn.
    """
    watch_poll_interval: float = 30.0
    """Seconds between a watcher's polls (a value lookup) while no holder accepts its LISTEN
    (all refused ``OVERLOADED``, or this node is client-only over a transport that cannot push)."""
    max_listeners: int = 16384
    """Listeners a holder keeps in all (one per key and listening node), about 200 bytes each."""
    max_listeners_per_key: int = 4096
    """Listeners a holder keeps for one key."""
    max_listeners_per_ip: int = 64
    """Listeners a holder keeps from one IP address (/24 or /48 group; ``per_ip_exempt`` hosts
    are not counted)."""
    watch_push_rate: float = 10.0
    """Pushes per second a holder sends one listener; faster changes are coalesced: the
    listener gets the latest pair when its turn comes."""
    watch_push_timeout: float = 5.0
    """Seconds one push may take; a listener that does not answer in time (one that never
    reads fills its socket buffer) is dropped, so it never holds the holder up."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "bool":
                if not isinstance(value, bool):
                    raise TypeError(f"Config.{field.name} must be true or false, not {value!r}")
                continue
            if field.name in _EXEMPTIONS:
                if value is not None:
                    _check_networks(field.name, value)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Config.{field.name} must be a number, not {value!r}")
            if field.type == "int" and not isinstance(value, int):
                raise TypeError(f"Config.{field.name} must be an int, not {value!r}")
            if not value > 0:
                raise ValueError(f"Config.{field.name} must be > 0, got {value!r}")
        if self.min_rpc_timeout > self.rpc_timeout:
            raise ValueError("Config.min_rpc_timeout must not exceed Config.rpc_timeout")
        if self.descriptor_share > 1:
            raise ValueError("Config.descriptor_share must be at most 1")
        if self.alpha > self.k:
            raise ValueError(f"Config.alpha ({self.alpha}) must not exceed Config.k ({self.k})")
        if self.lookup_max_contacts < self.k:
            raise ValueError("Config.lookup_max_contacts must be at least Config.k")
        if self.disjoint_paths > self.k:
            raise ValueError("Config.disjoint_paths must not exceed Config.k")
        if self.provider_reannounce_interval >= self.provider_lifetime:
            raise ValueError("Config.provider_reannounce_interval must be below provider_lifetime")
        if self.max_providers_per_topic > 256:
            raise ValueError("Config.max_providers_per_topic must be at most 256")
        if self.max_value_size + 1024 > self.max_frame_size:
            raise ValueError("Config.max_frame_size must leave room for a value of max_value_size")
        if self.watch_listener_ttl <= self.watch_renew_interval:
            raise ValueError("Config.watch_listener_ttl must exceed Config.watch_renew_interval")

    def replace(self, **changes: object) -> Config:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def for_host(self, host: str) -> Config:
        """This config as a node listening on ``host`` uses it: automatic exemptions made explicit.

        Each exemption left ``None`` becomes the networks it stands for in the
        scope ``host`` listens in (``_address.listening_scope``): loopback
        networks on a loopback address (or ``localhost``), private ranges for
        ``diversity_exempt`` on a private one, ``()`` otherwise; exemptions set
        explicitly are kept as they are.
        """
        scope = listening_scope(host)
        changes = {
            name: by_scope.get(scope, ())
            for name, by_scope in _EXEMPTIONS.items()
            if getattr(self, name) is None
        }
        return self.replace(**changes) if changes else self


_EXEMPTIONS: dict[str, dict[Scope, tuple[str, ...]]] = {
    "diversity_exempt": {
        Scope.LOOPBACK: ("127.0.0.0/8", "::1/128"),
        Scope.PRIVATE: (
            *("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16"),
            "fc00::/7",
        ),
    },
    "per_ip_exempt": {Scope.LOOPBACK: ("127.0.0.1/32", "::1/128")},
}
"""The exemption fields and what ``None`` stands for by the scope a node listens in."""


def _check_networks(name: str, value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"Config.{name} must be a tuple of network strings")
    for network in value:
        try:
            ipaddress.ip_network(network)
        except ValueError as exc:
            raise ValueError(f"Config.{name}: {exc}") from None
