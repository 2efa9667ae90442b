"""Compiled loops (numba) made when first called, not when their module is imported.

With an explicit signature numba compiles a loop, or loads it from its on-disk cache, as the decorator runs: the
reco and LTV loops took ~0.1-0.2 s of every start that way, for requests that may come much later. `@later(...)`
takes the same arguments as `numba.njit` and keeps the function until it is first called, or until `load_all()`
(a server calls it in a worker thread once it is ready, Platform's warm_up): then each loop of that module is
compiled in the order it is defined (a loop that calls another finds it compiled) and the module's name for it
becomes numba's dispatcher, so calls after that pay nothing for the deferral. The arithmetic is numba's either way:
the same machine code as an eager `numba.njit` with the same arguments.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import numba

_lock = threading.RLock()  # one module's loops are compiled once, whichever thread asks first
_waiting: dict[str, list[Later]] = {}  # module name -> its loops not compiled yet, in the order defined


class Later:
    """A loop whose numba dispatcher is made when it is first needed; called like the dispatcher."""

    def __init__(self, fn: Callable[..., Any], signature: Any, options: dict[str, Any]) -> None:
        self.py_func = fn
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self._signature = signature
        self._options = options
        self.dispatcher: Any = None

    def __call__(self, *args: Any) -> Any:
        dispatcher = self.dispatcher
        if dispatcher is None:
            load_module(self.__module__)
            dispatcher = self.dispatcher
        return dispatcher(*args)

    def _compile(self) -> None:
        if self.dispatcher is None:
            self.dispatcher = numba.njit(self._signature, **self._options)(self.py_func)
            self.py_func.__globals__[self.__name__] = self.dispatcher


def later(signature: Any = None, **options: Any) -> Callable[[Callable[..., Any]], Later]:
    """numba.njit(signature, **options), compiled when first called or by load_all()."""
    def wrap(fn: Callable[..., Any]) -> Later:
        loop = Later(fn, signature, options)
        _waiting.setdefault(fn.__module__, []).append(loop)
        return loop
    return wrap


def load_module(name: str) -> None:
    """Compile (or load from numba's cache) every deferred loop of module `name`, in the order they were defined."""
    with _lock:
        loops = _waiting.get(name, [])
        while loops:  # one that fails stays, to be compiled again when next asked for
            loops[0]._compile()
            loops.pop(0)
        _waiting.pop(name, None)


def load_modules(names: tuple[str, ...]) -> None:
    """load_module() for each of `names`, importing it first."""
    for name in names:
        importlib.import_module(name)
        load_module(name)


def load_all() -> list[str]:
    """Every deferred loop of every module imported so far (a server's warm-up); the modules' names."""
    with _lock:
        names = list(_waiting)
        for name in names:
            load_module(name)
    return names
