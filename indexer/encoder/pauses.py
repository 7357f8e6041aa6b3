"""Pause points between a model's transformer layers, for the thread that asks for them.

A forward pass cannot be interrupted, but it can be paused between two layers: its activations wait in
the calling thread while another forward pass (a search's) uses the model, then it goes on. Each model
loaded by this package calls ``pause_point()`` before every layer (a forward pre-hook); it does nothing
unless the calling thread runs inside ``between_layers(fn)``, where it calls ``fn``. The service's
scheduler uses this to give searches the model within one layer of an upload's forward pass
(``retriever.scheduler``). Forward passes on a multi-device pool's worker threads are not paused.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_local = threading.local()


@contextlib.contextmanager
def between_layers(fn: Callable[[], None]) -> Iterator[None]:
    """Call ``fn`` between the layers of every forward pass this thread runs meanwhile."""
    outer = getattr(_local, "fn", None)
    _local.fn = fn
    try:
        yield
    finally:
        _local.fn = outer


def pause_point(*_: Any) -> None:
    """A forward pre-hook (``module.register_forward_pre_hook(pause_point)``)."""
    fn = getattr(_local, "fn", None)
    if fn is not None:
        fn()


def install(backbone: Any) -> int:
    """Add ``pause_point`` before each transformer layer of a BERT-like backbone; how many were found."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if layers is None:
        return 0
    for layer in layers:
        layer.register_forward_pre_hook(pause_point)
    return len(layers)
