"""A reader/writer lock: many searches at once, an enrolment alone, and writers never starved by readers."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class ReadWriteLock:
    """Writer-preferring reader/writer lock (the classic turnstile construction on three plain locks).

    Readers pass a turnstile that a waiting writer holds closed, so a steady stream of searches cannot keep an
    enrolment out; the first reader in takes the room lock and the last one out releases it (a plain
    :class:`threading.Lock` may be released by another thread, which this needs). Not re-entrant.
    """

    def __init__(self) -> None:
        self._turnstile = threading.Lock()
        self._room = threading.Lock()
        self._count_lock = threading.Lock()
        self._readers = 0

    def acquire_read(self) -> None:
        """Enter shared (pair with :meth:`release_read`; :meth:`read` is the ``with`` form)."""
        # acquire/release pairs, not ``with`` blocks: this runs on every search (a 1k-template search is ~20 us)
        self._turnstile.acquire()
        self._turnstile.release()
        count = self._count_lock
        count.acquire()
        try:
            self._readers += 1
            if self._readers == 1:
                self._room.acquire()
        finally:
            count.release()

    def release_read(self) -> None:
        count = self._count_lock
        count.acquire()
        try:
            self._readers -= 1
            if self._readers == 0:
                self._room.release()
        finally:
            count.release()

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared for the ``with`` block."""
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively for the ``with`` block."""
        with self._turnstile:  # closed while waiting: new readers queue behind this writer
            self._room.acquire()
        try:
            yield
        finally:
            self._room.release()
