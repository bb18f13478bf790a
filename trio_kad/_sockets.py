"""Plain non-blocking sockets driven by Trio's low-level readiness waits.

The TCP transport keeps one task per connection end and many thousands of
ends in one process when nodes are simulated together. ``trio.SocketStream``
costs each end a wrapper socket, two conflict detectors, a lock and a cancel
scope per write; a connect through ``trio.open_tcp_stream`` costs a nursery
and a task for happy eyeballs. Here a connection is a stdlib socket, reads
and writes are the plain calls, and only a socket that is not ready waits,
with ``trio.lowlevel.wait_readable`` / ``wait_writable``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
from typing import Protocol

import trio
from trio.lowlevel import notify_closing, wait_writable

# accept() errors that mean "out of a resource for now", as in trio.serve_listeners:
# back off and keep accepting rather than taking the node down.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# accept() errors about the one connection being accepted (a firewall refused it,
# it was reset or timed out, or its route went away before we got to it): the
# list trio's SocketListener.accept ignores.
ACCEPT_SKIP_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
# Linux: a bound source takes its port at connect(), not bind(), so the
# ephemeral ports are shared across destinations (Python 3.12 names it).
_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def close(sock: socket.socket) -> None:
    """Close ``sock``, first waking any task waiting on it (it gets ClosedResourceError)."""
    if sock.fileno() != -1:
        notify_closing(sock)
        sock.close()


def prepare(sock: socket.socket) -> None:
    """Make a connected socket non-blocking, with Nagle off: frames are small and waited for."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _numeric_family(host: str) -> int | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _established(sock: socket.socket) -> bool:
    """Whether a non-blocking connect has already completed (it has a peer)."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def outbound_source(listen_host: str | None, target: str) -> str | None:
    """The address to bind a connection to ``target`` to, for a node listening on ``listen_host``.

    Peers record a node at the source IP of its connections (plus the port it
    says it listens on), so on a multi-homed host a connection must leave from
    the listen address, or peers record the node where nothing listens. None
    (let the kernel choose) for an unspecified or named listen host, another
    address family, or a loopback listen host and a target that is not:
    loopback cannot reach out, and such a node is never reachable from there.
    """
    if listen_host is None:
        return None
    try:
        source = ipaddress.ip_address(listen_host)
        destination = ipaddress.ip_address(target)
    except ValueError:
        return None
    if source.is_unspecified or source.version != destination.version:
        return None
    if source.is_loopback and not destination.is_loopback:
        return None
    return listen_host


def _bind_source(sock: socket.socket, source: str) -> None:
    if sys.platform == "linux":
        # An older kernel refuses it: a port per bind then, still correct.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, _BIND_ADDRESS_NO_PORT, 1)
    sock.bind((source, 0))


async def connect(host: str, port: int, *, listen_host: str | None = None) -> socket.socket:
    """A connected, non-blocking TCP socket to ``host``:``port``.

    An IP literal (every contact's address) connects without a resolver call;
    a name (a bootstrap peer given by name) is resolved first and its
    addresses tried in turn. With ``listen_host``, the connection leaves
    from it where ``outbound_source`` says so. Bounded by the caller's cancel
    scope.
    """
    family = _numeric_family(host)
    targets: list[tuple[int, tuple[object, ...]]]
    if family is not None:
        targets = [(family, (host, port))]
    else:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        targets = [(info[0], tuple(info[4])) for info in infos]
        if not targets:
            raise OSError(errno.EHOSTUNREACH, f"no address for {host}")
    error: OSError | None = None
    for family, sockaddr in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            prepare(sock)
            source = outbound_source(listen_host, str(sockaddr[0]))
            if source is not None:
                _bind_source(sock, source)
            try:
                sock.connect(sockaddr)
            except BlockingIOError:
                # On loopback the handshake is usually over by now: skip the wait then.
                if not _established(sock):
                    await wait_writable(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise OSError(code, os.strerror(code)) from None
        except OSError as exc:
            close(sock)
            error = exc
            continue
        except BaseException:
            close(sock)
            raise
        return sock
    assert error is not None
    raise error


async def listen(host: str | None, port: int) -> list[socket.socket]:
    """Listening sockets for ``host``:``port``, bound as ``trio.open_tcp_listeners`` binds them."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    socks: list[socket.socket] = []
    try:
        for listener in listeners:
            sock = socket.socket(fileno=listener.socket.detach())
            sock.setblocking(False)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return socks


class Budgeted(Protocol):
    """A connection the descriptor budget may close when it has nothing in flight."""

    def idle(self) -> bool: ...

    def close_for_budget(self) -> None: ...


class DescriptorBudget:
    """Connections every transport of this process dialed, least recently used first.

    ``Config.max_outbound_connections`` caps one node's dialed connections;
    this caps the sum over the process, so a thousand nodes simulated in one
    process share the file-descriptor limit instead of running into it.
    """

    __slots__ = ("_limit", "_share", "conns")

    def __init__(self) -> None:
        self.conns: dict[Budgeted, None] = {}
        self._limit: int | None = None
        self._share = 0.4

    def configure(self, share: float) -> None:
        """Use ``share`` of the descriptor limit (``Config.descriptor_share``; the last wins)."""
        if share != self._share:
            self._share = share
            self._limit = None

    @property
    def limit(self) -> int:
        """How many dialed connections the process may hold at once."""
        if self._limit is None:
            self._limit = _descriptor_limit(self._share)
        return self._limit

    @limit.setter
    def limit(self, value: int | None) -> None:
        self._limit = value

    def add(self, conn: Budgeted) -> None:
        self.conns[conn] = None

    def touch(self, conn: Budgeted) -> None:
        """``conn`` was used: it becomes the most recently used."""
        if conn in self.conns:
            del self.conns[conn]
            self.conns[conn] = None

    def discard(self, conn: Budgeted) -> None:
        self.conns.pop(conn, None)

    def make_room(self) -> None:
        """Close the least recently used idle connection(s) while at the limit."""
        excess = len(self.conns) - self.limit + 1
        if excess <= 0:
            return
        idle: list[Budgeted] = []
        for conn in self.conns:
            if conn.idle():
                idle.append(conn)
                if len(idle) == excess:
                    break
        for conn in idle:
            conn.close_for_budget()


def _descriptor_limit(share: float) -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return 1 << 16
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, int(soft * share))


PROCESS_BUDGET = DescriptorBudget()
"""The one budget of this process (descriptors are a process-wide resource)."""
