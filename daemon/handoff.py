"""Hand-offs: one publisher, any number of subscribers, none of which can hurt the publisher.

A finished upload (`dropzone/handoff.py`) and a finished run (`runs/lifecycle.py`) are handed
off this way: whatever acts on them (feeds, recap emails, metrics) subscribes, and a failing
subscriber is logged and never disturbs the transfer, the run or the other subscribers.
"""

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("dropd.handoff")

Event = TypeVar("Event")


class Handoff(Generic[Event]):
    def __init__(self, name: str):
        self.name = name
        """Names the hand-off in the log line of a failing subscriber (`<name>.subscriber_failed`)."""
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Callable[[Event], None]) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Callable[[Event], None]) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def publish(self, event: Event, **context) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception(
                    f"{self.name}.subscriber_failed", subscriber=getattr(subscriber, "__qualname__", None), **context
                )
