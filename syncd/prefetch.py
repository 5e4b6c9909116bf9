"""Iterators that block on HTTP, fetched ahead by worker threads while the caller works on what arrived.

``interleaved({name: iterator, ...})`` runs one worker thread per iterator and hands the caller
``(name, item)`` pairs as they arrive: each iterator's items in its own order, the iterators' items mixed.
Each worker fetches at most ``depth`` items ahead of the caller. An error of any iterator is raised in the
caller; leaving the block (normally, early, or by that error) stops every worker after the item it is
fetching, closes its iterator in its own thread, and waits for it. ``prefetched(iterator)`` is the same for
one iterator, without the names.

Only the iterators run in the workers: whatever the caller does with an item (a ledger transaction) stays
in the caller's thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from queue import Empty, Queue
from typing import Any, TypeVar

__all__ = ["interleaved", "prefetched"]

K = TypeVar("K")
T = TypeVar("T")
_DONE = object()
# How often a waiting worker looks whether the caller left.
_POLL = 0.1


@contextlib.contextmanager
def interleaved(sources: Mapping[K, Iterator[T]], depth: int = 1) -> Iterator[Iterator[tuple[K, T]]]:
    """``(name, item)`` from every iterator of ``sources``, each fetched by its own worker thread."""
    if depth < 1:
        raise ValueError("depth must be >= 1")
    queue: Queue[tuple[Any, Any, BaseException | None]] = Queue()
    halt = threading.Event()
    # Per source: how many more items its worker may hand over before the caller takes one.
    room = {name: threading.Semaphore(depth) for name in sources}

    def produce(name: K, items: Iterator[T]) -> None:
        try:
            for item in items:
                while not room[name].acquire(timeout=_POLL):
                    if halt.is_set():
                        return
                if halt.is_set():
                    return
                queue.put((name, item, None))
            queue.put((name, _DONE, None))
        except BaseException as exc:  # handed to the caller, which raises it
            queue.put((name, _DONE, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    workers = [
        threading.Thread(target=produce, args=(name, items), name=f"prefetch-{name}", daemon=True)
        for name, items in sources.items()
    ]
    for worker in workers:
        worker.start()

    def consume() -> Iterator[tuple[K, T]]:
        running = len(workers)
        while running:
            name, item, error = queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                running -= 1
                continue
            room[name].release()
            yield name, item

    try:
        yield consume()
    finally:
        halt.set()
        for worker in workers:
            # A worker ends after the call it is in (an HTTP request, a rate limiter's wait).
            while worker.is_alive():
                with contextlib.suppress(Empty):
                    queue.get_nowait()
                worker.join(timeout=_POLL)


@contextlib.contextmanager
def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[Iterator[T]]:
    """``items`` fetched by a worker thread, ``depth`` ahead of the caller (``interleaved`` of one)."""
    with interleaved({"items": items}, depth) as pairs:
        yield (item for _, item in pairs)
