"""Stop requests: SIGINT (Ctrl-C) and SIGTERM as "stop after this iteration, checkpointed".

A run killed in the middle of an iteration loses what it trained since its last checkpoint (up to
``checkpoint_every`` iterations, or minutes). Inside ``stop_requests()`` the first SIGINT or SIGTERM
(a terminal's Ctrl-C; a scheduler's preemption or wall-time warning; ``kill``) only records the
signal: ``fit`` reads it after each iteration, writes its checkpoint and returns with
``stopped="signal"``, and the command line exits with ``128 + signum``, as a killed process would,
after saying how to continue. A second Ctrl-C interrupts at once (``KeyboardInterrupt``; the last
checkpoint is kept). Further SIGTERMs are ignored: the stop is under way, and a scheduler that will
not wait sends SIGKILL, which nothing catches. Handlers can be set only in the main thread; elsewhere
(and with ``signals=()``) nothing is installed and no request is ever seen. The previous handlers
are restored on exit.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, Optional, Sequence

__all__ = ["StopRequest", "stop_requests", "SIGNALS"]

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first stop signal received inside ``stop_requests()`` (``signum``; ``None``: none yet)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextmanager
def stop_requests(signals: Sequence[int] = SIGNALS) -> Iterator[StopRequest]:
    """Within the block, the first of ``signals`` sets ``request.signum`` instead of stopping the
    process; the caller polls ``request.requested`` where stopping is safe (``fit``: after an
    iteration), so that it can checkpoint first."""
    req = StopRequest()
    if not signals or threading.current_thread() is not threading.main_thread():
        yield req
        return

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if req.signum is None:
            req.signum = signum
            again = " (Ctrl-C again stops at once, losing the iterations since the last checkpoint)" \
                if signum == signal.SIGINT else ""
            print(f"\nmetagrad: {signal.Signals(signum).name} received: stopping after this iteration with a "
                  f"checkpoint{again}", file=sys.stderr, flush=True)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in signals}
    try:
        for s in signals:
            signal.signal(s, handler)
        yield req
    finally:
        for s, h in previous.items():   # None: a handler set outside Python, which cannot be put back
            signal.signal(s, h if h is not None else signal.SIG_DFL)
