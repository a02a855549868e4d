"""Progress callbacks, exceptions raised in them, and Ctrl-C."""

import os
import signal
import threading

import numpy as np
import pytest

import hnsw_batch as hb


def consistent(index, X, ids):
    """Every id the index holds is one of `ids`, stored exactly, and found by its own vector."""
    held = index.ids()
    assert set(held.tolist()) <= set(ids)
    pos = {int(i): p for p, i in enumerate(ids)}
    sample = held[:50]
    if len(sample):
        rows = np.array([pos[int(i)] for i in sample])
        np.testing.assert_array_equal(index.get_items(sample), X[rows])
        got, _ = index.knn_query(X[rows], k=1)
        assert (got[:, 0] == sample).mean() > 0.9


def test_progress_callable_gets_zero_and_total(rng):
    index = hb.Index("l2", 4)
    events = []
    report = index.add_items(rng.random((5000, 4)), progress=events.append)
    assert report.inserted == 5000
    assert (events[0].done, events[0].total) == (0, 5000)
    assert (events[-1].done, events[-1].total) == (5000, 5000)
    assert events[-1].fraction == 1.0
    done = [e.done for e in events]
    assert done == sorted(done) and len(events) <= 103
    assert "ProgressEvent(done=0" in repr(events[0])


def test_progress_on_small_batch_and_durable(rng, tmp_path):
    events = []
    hb.Index("l2", 4).add_items(rng.random((3, 4)), progress=events.append)
    assert [(e.done, e.total) for e in (events[0], events[-1])] == [(0, 3), (3, 3)]
    events.clear()
    with hb.DurableIndex(tmp_path / "d", "l2", 4) as d:
        d.add_items(rng.random((300, 4)), progress=events.append)
    assert (events[0].done, events[-1].done) == (0, 300)


def test_progress_true_prints_a_bar(rng, capsys, monkeypatch):
    import hnsw_batch._progress as p

    monkeypatch.setattr(p, "TqdmBar", p.TextBar)  # the plain bar, whether tqdm is installed or not
    hb.Index("l2", 4).add_items(rng.random((3000, 4)), progress=True)
    err = capsys.readouterr().err
    assert "3000/3000" in err and err.endswith("\n")
    hb.Index("l2", 4).add_items(rng.random((10, 4)), progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("n", [1000, 30000])
def test_exception_in_callback_cancels_and_propagates(rng, n):
    X = rng.random((n, 4), dtype=np.float32)
    ids = np.arange(n, dtype=np.uint64)
    index = hb.Index("l2", 4)
    calls = []

    def callback(event):
        calls.append(event.done)
        if event.done > 0:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        index.add_items(X, ids, progress=callback, num_threads=2)
    assert len(index) < n
    assert len(calls) == 2  # no call after the one that raised
    consistent(index, X, ids)
    # The index keeps working: the rest can be added.
    missing = np.setdiff1d(ids, index.ids())
    index.add_items(X[missing.astype(np.int64)], missing)
    assert len(index) == n


def test_callback_raising_at_start_inserts_nothing(rng):
    index = hb.Index("l2", 4)

    def callback(event):
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        index.add_items(rng.random((5000, 4)), progress=callback)
    assert len(index) == 0


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT")
def test_ctrl_c_cancels_cleanly(rng):
    n = 100_000
    X = rng.random((n, 16), dtype=np.float32)
    ids = np.arange(n, dtype=np.uint64)
    index = hb.Index("l2", 16, ef_construction=100)
    started, stop = threading.Event(), threading.Event()
    interrupts = []

    def on_sigint(signum, frame):
        # Like the default handler, but only once: the killer repeats SIGINT until the call ends.
        if not interrupts:
            interrupts.append(signum)
            raise KeyboardInterrupt

    def callback(event):
        if event.done > 0:
            started.set()

    def killer():
        started.wait(60)
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)
            stop.wait(0.5)

    previous = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Thread(target=killer)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            index.add_items(X, ids, progress=callback, num_threads=2)
    finally:
        stop.set()
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert 0 < len(index) < n
    consistent(index, X, ids)
