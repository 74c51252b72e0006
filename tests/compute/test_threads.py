"""compute.ops.threads: a kernel's outer loop cut into one part per CPU thread."""
import threading

from gatescope.compute.ops import threads


def test_the_parts_cover_the_loop_once_each_on_their_own_thread(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert threads.cpu_threads() == 3
    calls = []

    def kernel(tag, first, last):
        calls.append((tag, first, last, threading.get_ident()))

    threads.split(kernel, 10, threads.MIN_SPLIT_WORK, "x")
    ranges = sorted((first, last) for _, first, last, _ in calls)
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    assert {tag for tag, *_ in calls} == {"x"}
    idents = {ident for *_, ident in calls}
    assert threading.get_ident() in idents and len(idents) >= 2     # the caller does a part, a pool the rest


def test_small_work_and_short_loops_run_in_one_piece(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    calls = []
    threads.split(lambda first, last: calls.append((first, last)), 10, threads.MIN_SPLIT_WORK - 1)
    threads.split(lambda first, last: calls.append((first, last)), 1, 10 * threads.MIN_SPLIT_WORK)
    assert calls == [(0, 10), (0, 1)]


def test_an_error_in_a_part_reaches_the_caller(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")

    def kernel(first, last):
        if first > 0:
            raise ValueError("bad part")

    try:
        threads.split(kernel, 4, threads.MIN_SPLIT_WORK)
    except ValueError as exc:
        assert "bad part" in str(exc)
    else:
        raise AssertionError("the error of a part was lost")
