"""Identifiers from the pooled random bytes never repeat, across threads and forks; ordered ones sort by creation."""

import os
import threading
import time
from types import SimpleNamespace

from app import ids


def test_ids_are_unique_across_threads_and_pool_refills():
    seen: list[str] = []

    def draw() -> None:
        seen.extend(ids.token_hex(16) for _ in range(5_000))
    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 20_000 and len(set(seen)) == 20_000  # 20,000 x 16 bytes: many 4 KiB refills
    assert all(len(s) == 32 for s in seen)
    assert len(ids.token_urlsafe(18)) == 24


def test_a_forked_child_does_not_repeat_the_parents_ids():
    ids.token_hex(1)  # the parent's pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ids.token_hex(16).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != ids.token_hex(16)


def test_ordered_ids_sort_by_creation_even_when_the_clock_steps_back(monkeypatch):
    first = [ids.ordered_hex() for _ in range(1_000)]  # many within one microsecond
    an_hour_ago = time.time_ns() - 3_600 * 10**9
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: an_hour_ago))  # the wall clock steps back
    later = [ids.ordered_hex() for _ in range(10)]
    made = first + later
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 13 + 20 for i in made)
    assert len({i[13:] for i in made}) == len(made)  # each still carries its own 10 random bytes


def test_ordered_ids_from_many_threads_are_unique_and_sort_in_each_thread():
    made: list[list[str]] = [[] for _ in range(4)]

    def draw(mine: list[str]) -> None:
        mine.extend(ids.ordered_hex() for _ in range(5_000))
    threads = [threading.Thread(target=draw, args=(mine,)) for mine in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for mine in made for i in mine]
    assert len({i[:13] for i in every}) == 20_000  # no two share a time prefix, so all are ordered
    assert all(mine == sorted(mine) for mine in made)


def test_ids_made_together_sort_after_earlier_ones_and_differ():
    before = ids.ordered_hex(prefix="off_")
    batch = ids.ordered_hexes(5, prefix="off_")
    after = ids.ordered_hex(prefix="off_")
    assert [before, *batch, after] == sorted([before, *batch, after])
    assert len({i[4 + 13:] for i in batch}) == 5 and all(i.startswith("off_") and len(i) == 4 + 33 for i in batch)
