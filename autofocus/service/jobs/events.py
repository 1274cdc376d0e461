"""Fan-out of job events from the worker thread to asyncio subscribers (SSE, `?wait=`).

The worker thread calls `publish(event)`; the broker hands the event to the
event loop with `call_soon_threadsafe`, which puts it on every subscriber's
`asyncio.Queue`. Subscribers never block the worker: a subscriber that falls
`max_backlog` events behind is dropped (its queue gets `None`) and may
reconnect, replaying from the store by sequence number.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from autofocus.service.jobs.store import StoredEvent

_CLOSED = None  # sentinel put on a subscriber queue when the stream must end


class Subscription:
    """A live feed of one job's events: `await sub.get()` returns a `StoredEvent` or None.

    None means the feed was closed (daemon shutting down or subscriber too slow).
    Use as a context manager so it is removed from the broker when done.
    """

    def __init__(self, broker: EventBroker, job_id: str, max_backlog: int) -> None:
        self.broker = broker
        self.job_id = job_id
        self.queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue(maxsize=max_backlog + 1)
        self.max_backlog = max_backlog

    async def get(self) -> StoredEvent | None:
        return await self.queue.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.broker.unsubscribe(self)


class EventBroker:
    """Thread-safe publish, event-loop-side subscribe, per job id."""

    def __init__(self, max_backlog: int = 10_000) -> None:
        self.max_backlog = max_backlog
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the event loop that serves subscribers (called at app start-up)."""
        self._loop = loop

    def subscribe(self, job_id: str) -> Subscription:
        """Start receiving events of `job_id` (call from the event loop)."""
        sub = Subscription(self, job_id, self.max_backlog)
        with self._lock:
            self._subs[job_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription (idempotent)."""
        with self._lock:
            subs = self._subs.get(sub.job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.job_id]

    def publish(self, event: StoredEvent) -> None:
        """Deliver `event` to the subscribers of its job; safe from any thread, never blocks."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            if event.job_id not in self._subs:
                return
        try:
            loop.call_soon_threadsafe(self._dispatch, event)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def close_all(self) -> None:
        """End every subscription (daemon shutting down); call from the event loop."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            _offer(sub, _CLOSED, force=True)

    def _dispatch(self, event: StoredEvent) -> None:
        with self._lock:
            subs = list(self._subs.get(event.job_id, ()))
        for sub in subs:
            if sub.queue.qsize() >= sub.max_backlog:
                self.unsubscribe(sub)
                _offer(sub, _CLOSED, force=True)
            else:
                _offer(sub, event)


def _offer(sub: Subscription, item: StoredEvent | None, *, force: bool = False) -> None:
    try:
        sub.queue.put_nowait(item)
    except asyncio.QueueFull:
        if force:  # make room for the close sentinel: the reader must learn it was dropped
            try:
                sub.queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
            sub.queue.put_nowait(item)
