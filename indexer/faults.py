"""Crash points for the crash-safety tests: ``INDEXER_CRASH_AT=write:3`` kills the process (SIGKILL)
the 3rd time the pipeline reaches the point named ``write``. Unset, it costs one dict lookup.
``INDEXER_CRASH_ONCE=FILE`` arms it by a file: it fires only if it can remove FILE (one process of many, once).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "INDEXER_CRASH_AT"
ONCE_ENV = "INDEXER_CRASH_ONCE"
_seen: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    _seen[name] += 1
    target, _, nth = spec.partition(":")
    if target == name and _seen[name] == int(nth or 1):
        once = os.environ.get(ONCE_ENV)
        if once:
            try:
                os.remove(once)
            except FileNotFoundError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
