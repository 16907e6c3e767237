"""A one-slot mailbox: the newest item wins, replaced items are counted as dropped."""
from __future__ import annotations

import threading


class LatestSlot:
    def __init__(self):
        self._item = None
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item) -> bool:
        """Store `item`; returns True when it replaced one that was never taken."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None):
        """The newest item (None after close() or on timeout)."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
