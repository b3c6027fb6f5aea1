"""How a command stops early: Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, a batch
scheduler's stop). Both become a KeyboardInterrupt, so a search's running trials end FAIL and its
outputs are written before the CLI exits with status 130 or 143."""
from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (exit status 143)."""


class _OnSignal:
    """A signal handler that raises ``exc`` and remembers that it did: Ray and Typer may pass the
    interrupt on as a plain KeyboardInterrupt, or lose it (see :func:`raise_if_swallowed`)."""

    exc: type[KeyboardInterrupt] = KeyboardInterrupt

    def __init__(self) -> None:
        self.received = False
        self.raised_again = False

    def __call__(self, signum: int, frame: object) -> None:
        self.received = True
        raise self.exc()


class OnSigint(_OnSignal):
    """Ctrl-C (SIGINT): a KeyboardInterrupt, as Python's own handler raises (exit status 130)."""


class OnSigterm(_OnSignal):
    """SIGTERM, handled as Ctrl-C is (exit status 143)."""

    exc = Terminated


def raise_if_swallowed() -> None:
    """Raise the interrupt once more where a SIGINT or SIGTERM was received but its exception was
    lost: a handler that runs inside a weakref callback or ``__del__`` raises where Python ignores
    exceptions ("Exception ignored in ..."), and the search went on to the end with status 0 (seen
    for both signals). A loop that can stop calls this at every step."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(sig)
        if isinstance(handler, _OnSignal) and handler.received and not handler.raised_again:
            handler.raised_again = True
            raise handler.exc()


def terminated(e: BaseException) -> bool:
    """Whether an interrupt came from SIGTERM (see :class:`OnSigterm`), not Ctrl-C."""
    return isinstance(e, Terminated) or getattr(signal.getsignal(signal.SIGTERM), "received", False)


@contextmanager
def shielded() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while a stop's cleanup runs: a second Ctrl-C, or the signal a
    process group's stop also sends Ray's processes (whose death Ray reports to its driver as an
    interrupt), would cut the cleanup short and leave trials RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def ray_lost(wait: float = 1.0) -> bool:
    """Whether the Ray this process started has lost processes of its own (watched for up to
    ``wait`` seconds). A SIGTERM to the whole process group (``timeout``, a batch scheduler) reaches
    them too, and shutting Ray down at exit would then wait a minute for them and exit with status 1."""
    worker = getattr(sys.modules.get("ray"), "_private", None)
    node = getattr(getattr(worker, "worker", None), "_global_node", None)
    if node is None or not getattr(node, "head", False):
        return False
    end = time.monotonic() + wait
    while node.remaining_processes_alive():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True
