"""Writers of one SQLite database in one process queue for each other; readers do not wait for them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from control_plane.db.session import make_engine


def test_overlapping_writes_all_commit_and_reads_see_commits_while_a_write_is_open(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    first_wrote = threading.Event()
    read_done = threading.Event()

    def hold_a_write() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (0)"))
            first_wrote.set()
            read_done.wait()

    def write(n: int) -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

    with ThreadPoolExecutor(max_workers=9) as pool:
        holder = pool.submit(hold_a_write)
        first_wrote.wait()
        writers = [pool.submit(write, n) for n in range(1, 9)]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        read_done.set()
        holder.result()
        for writer in writers:
            writer.result()
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT n FROM t")).scalars()) == list(range(9))
    engine.dispose()


def test_a_failed_write_leaves_the_database_writable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    done = threading.Event()

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=10)
    assert done.is_set()
    engine.dispose()
