"""Deferred compiled loops (ml/compiled.py): nothing is compiled at import; the first call (or load_all) compiles
its module's loops in order, and from then on the module's names are numba's dispatchers, giving what an eager
numba.njit gives."""

import subprocess
import sys
import types as pytypes
import uuid

import numba
import numpy as np

from ml import compiled
from ml.compiled import Later

LOOPS = """
from numba import types
from ml.compiled import later

_I64 = types.Array(types.int64, 1, "C", readonly=True)


@later(types.int64(_I64), boundscheck=False)
def total(values):
    out = 0
    for v in values:
        out += v
    return out


@later(types.int64(_I64))
def twice_total(values):
    return 2 * total(values)  # another deferred loop: compiled before this one
"""


def _loops() -> pytypes.ModuleType:
    """A module of its own (a server's warm-up in this process compiles every module already imported)."""
    name = f"deferred_loops_{uuid.uuid4().hex}"
    module = sys.modules[name] = pytypes.ModuleType(name)
    exec(compile(LOOPS, f"<{name}>", "exec"), module.__dict__)
    return module


def test_the_first_call_compiles_the_module_in_order_and_the_names_become_dispatchers():
    loops = _loops()
    values = np.arange(10, dtype=np.int64)
    values.flags.writeable = False
    first = loops.twice_total
    assert isinstance(first, Later) and first.dispatcher is None and isinstance(loops.total, Later)
    assert first(values) == 90  # `total`, called inside, was compiled first
    assert isinstance(loops.total, numba.core.registry.CPUDispatcher)
    assert loops.twice_total is first.dispatcher
    eager = numba.njit(loops.total.signatures[0], boundscheck=False)(loops.total.py_func)
    assert loops.total(values) == eager(values) == 45
    assert first(values) == 90  # a reference taken before still works
    assert loops.__name__ not in compiled.load_all()  # nothing of this module left to compile


def test_load_all_compiles_every_module_waiting():
    loops = _loops()
    assert loops.__name__ in compiled.load_all()
    assert not isinstance(loops.total, Later) and not isinstance(loops.twice_total, Later)


def test_a_start_compiles_no_reco_or_ltv_loop_and_the_warm_up_compiles_them_all():
    script = """
import sys
import app.main
from ml.compiled import Later, load_all
from ml.ltv import kernels as ltv
from ml.reco import kernels as reco
assert isinstance(reco.top_n, Later) and reco.top_n.dispatcher is None
assert isinstance(ltv.point, Later) and ltv.point.dispatcher is None
loaded = load_all()
assert {"ml.reco.kernels", "ml.ltv.kernels"} <= set(loaded), loaded
assert not isinstance(reco.top_n, Later) and not isinstance(ltv.point, Later)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
