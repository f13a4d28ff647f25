from __future__ import annotations

import threading
import time

import pytest

from audit.data.prefetch import prefetch
from audit.errors import AuditError


def test_order_is_kept_and_work_happens_in_another_thread() -> None:
    threads: list[str] = []

    def produce():
        for i in range(10):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(produce(), depth=3)) == list(range(10))
    assert set(threads) == {"audit-prefetch"}


def test_producer_error_reaches_the_consumer_after_the_items_before_it() -> None:
    def produce():
        yield 1
        yield 2
        raise AuditError("bad.png: unreadable")

    seen = []
    with pytest.raises(AuditError, match="bad.png"):
        for item in prefetch(produce()):
            seen.append(item)
    assert seen == [1, 2]


def test_producer_stops_when_the_consumer_stops() -> None:
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    for item in prefetch(produce(), depth=2):
        if item == 3:
            break
    time.sleep(0.5)
    assert len(produced) < 10
