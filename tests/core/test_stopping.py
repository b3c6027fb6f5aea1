"""A stop signal whose exception was lost (raised inside a weakref callback or __del__) is raised again."""
from __future__ import annotations

import signal

import pytest

from rksearch.core.stopping import OnSigint, OnSigterm, Terminated, raise_if_swallowed


@pytest.mark.parametrize("sig, handler, exc", [(signal.SIGINT, OnSigint, KeyboardInterrupt),
                                               (signal.SIGTERM, OnSigterm, Terminated)], ids=["sigint", "sigterm"])
def test_a_swallowed_signal_is_raised_again_once(sig, handler, exc):
    h = handler()
    before = signal.signal(sig, h)
    try:
        raise_if_swallowed()  # nothing received: nothing raised
        with pytest.raises(exc):
            h(sig, None)  # the handler's own raise, as if Python then ignored it
        with pytest.raises(exc):
            raise_if_swallowed()
        raise_if_swallowed()  # once only
    finally:
        signal.signal(sig, before)
