"""One request on a shared TCP connection: the caller reads for everyone, in turns (Trio).

A connection has no reader task. The callers waiting on it take turns at
reading it and hand each reply to its own caller, whatever the order: the
usual RPC, alone on its connection, wakes for its reply straight from epoll,
one scheduler pass instead of two. When the reading caller has its reply or
gives up, the turn passes to a caller still asleep, else the connection is
parked with the watcher (``Connection.unread``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from trio.lowlevel import (
    Abort,
    Task,
    current_task,
    reschedule,
    wait_readable,
    wait_task_rescheduled,
)

from ._address import format_address
from ._errors import PeerMisbehaved, TransportError
from ._messages import ReplyFrame, Request

if TYPE_CHECKING:
    from ._tcp_conn import Connection


class Waiter:
    """One caller waiting for the reply to one request, or for its turn to read."""

    __slots__ = ("done", "error", "misbehaved", "reply", "task")

    def __init__(self) -> None:
        self.task: Task | None = None
        self.done = False
        self.reply: ReplyFrame | None = None
        self.error: str | None = None
        self.misbehaved = False

    async def wait(self) -> None:
        """Sleep until ``finish`` or ``wake`` (a turn to read), without an Event."""
        if self.done:
            return
        self.task = current_task()

        def abort(_: object) -> Abort:
            self.task = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def finish(self) -> None:
        self.done = True
        self.wake()

    def wake(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task)


async def call(
    conn: Connection, sender_id: bytes, sender_port: int | None, body: Request
) -> ReplyFrame:
    """Send one request on ``conn`` and wait for its reply, reading when it is our turn."""
    if conn.closed:
        raise TransportError(f"connection to {format_address(conn.remote)} closed")
    waiter = Waiter()
    try:
        request_id, data = conn.endpoint.send_request(sender_id, sender_port, body, waiter)
    except TransportError:
        if conn.reading is None and not conn.parked:
            conn.unread()  # a new connection: someone must read it
        raise
    conn.last_activity = trio.current_time()
    conn.owner.touched(conn)
    try:
        failure = conn.write(data)
        if failure is not None:
            raise TransportError(f"connection to {format_address(conn.remote)} lost: {failure}")
        while not waiter.done and not conn.closed:
            if conn.reading is None:
                conn.reading = waiter
                if conn.parked:
                    conn.owner.unpark(conn)
            if conn.reading is waiter:
                await _read_for(conn, waiter)
            else:
                await waiter.wait()
    finally:
        conn.endpoint.forget(request_id)
        if conn.reading is waiter:
            _pass_turn(conn)
        if not conn.endpoint.pending:
            conn.owner.released(conn)
    if waiter.reply is None:
        error = waiter.error or f"connection to {format_address(conn.remote)} closed"
        raise PeerMisbehaved(error) if waiter.misbehaved else TransportError(error)
    return waiter.reply


def _pass_turn(conn: Connection) -> None:
    """The reading caller leaves: the turn goes to a caller asleep, else to the watcher."""
    conn.reading = None
    if conn.closed:
        return
    for waiter in conn.endpoint.pending.values():
        if waiter.task is not None:
            conn.reading = waiter
            waiter.wake()
            return
    # A caller not asleep yet (still in ``call``) takes the turn back itself.
    conn.unread()


async def _read_for(conn: Connection, waiter: Waiter) -> None:
    """Read and dispatch until ``waiter`` has its reply or the connection ends.

    Half a frame bounds the wait to ``io_timeout`` from its start; otherwise
    the caller's own deadline (the RPC timeout) does.
    """
    sock = conn.sock
    endpoint = conn.endpoint
    while True:
        if conn.more:
            # Read no more until these are answered: the peer may not flood our memory.
            await trio.lowlevel.checkpoint()
            if not await conn.dispatch() or waiter.done:
                return
            continue
        try:
            if endpoint.buffered:
                deadline = endpoint.frame_started + conn.owner.config.io_timeout
                with trio.move_on_at(deadline):
                    await wait_readable(sock)
            else:
                await wait_readable(sock)
        except (OSError, trio.ClosedResourceError) as exc:
            if not conn.closed:
                conn.end_reading(f"read failed: {exc}")
            return
        # Past the half frame's deadline with nothing new, this closes it.
        if conn.receive() < 0 or not await conn.dispatch() or waiter.done:
            return
