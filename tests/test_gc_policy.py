"""A service worker's collector settings (service/gc_policy.py), checked in a process of its own:
the test process keeps CPython's defaults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import gc, weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a          # start-up garbage: a cycle only the collector frees
    gone = weakref.ref(a)
    del a, b
    gc.disable()                     # so that only tune_for_serving can free it
    from handoff.service.gc_policy import YOUNG, tune_for_serving
    defaults = gc.get_threshold()
    tune_for_serving()
    print(gone() is None, gc.get_freeze_count() > 0, gc.get_threshold() == (YOUNG, *defaults[1:]), YOUNG > defaults[0])
""")


def test_a_worker_frees_start_up_garbage_freezes_the_rest_and_collects_the_young_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "True", "True"]


WORKER = textwrap.dedent("""
    import gc, sys
    import uvicorn
    from handoff.service import app
    from handoff.service.gc_policy import YOUNG

    def serve(*args, **kwargs):  # instead of serving: report the collector as the server would run
        print(gc.get_threshold()[0] == YOUNG, gc.get_freeze_count() > 0)

    uvicorn.run = serve
    sys.argv = ["handoff.service", "--db", "memory", "--log-level", "warning"]
    app.main()
""")


def test_the_service_worker_runs_with_the_tuned_collector() -> None:
    out = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
