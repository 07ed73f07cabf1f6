"""Clean stop on preemption: a signal only sets a flag; the loop saves and exits.

Single process: :class:`PreemptionGuard` installs a SIGTERM (optionally SIGINT) handler that
sets ``should_stop``; the training loop checks it after each step, saves a checkpoint and
leaves the loop. A second identical signal falls through to the previous handler, so a
stuck run can still be killed (e.g. Ctrl-C twice).

Several processes: every host must stop at the same step or the next collective hangs, and a
preemption notice may reach the hosts at different times. JAX's preemption service (enable
``jax_enable_preemption_service`` before ``jax.distributed.initialize``) owns SIGTERM and
agrees on a step; :meth:`PreemptionGuard.should_stop_at` then asks
``multihost_utils.reached_preemption_sync_point(step)``, and the guard installs no SIGTERM
handler of its own so the service's handler stays in place.

References:
  ``jax.experimental.multihost_utils.reached_preemption_sync_point``.
"""

import logging
import signal
import threading
import types
from collections.abc import Sequence

import jax
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


class PreemptionGuard:
    """Context manager that turns termination signals into a ``should_stop`` flag.

    Example::

        with PreemptionGuard() as guard:
            for step in range(start, num_steps):
                state = train_step(state, ...)
                if guard.should_stop_at(step + 1):
                    save(step + 1, state)
                    break

    Args:
      signals: signals to catch. SIGTERM by default (what schedulers and ``kill`` send);
        add ``signal.SIGINT`` to turn Ctrl-C into a clean stop as well.
      multihost: use JAX's preemption sync point instead of a local handler; ``None`` means
        "when ``jax.process_count() > 1``".
    """

    def __init__(
        self,
        *,
        signals: Sequence[int] = (signal.SIGTERM,),
        multihost: bool | None = None,
    ):
        self.signals = tuple(signals)
        if not self.signals:
            raise ValueError("PreemptionGuard needs at least one signal to catch")
        self._multihost = multihost
        self._flag = threading.Event()
        self._received: int | None = None
        self._previous: dict[int, object] = {}
        self._active = False

    @property
    def multihost(self) -> bool:
        """Whether stops are agreed through JAX's preemption sync point (several processes)."""
        if self._multihost is None:
            return jax.process_count() > 1
        return self._multihost

    @property
    def should_stop(self) -> bool:
        """True once a caught signal arrived (this process only)."""
        return self._flag.is_set()

    @property
    def received_signal(self) -> int | None:
        """The first signal caught, or None."""
        return self._received

    def should_stop_at(self, step: int) -> bool:
        """Whether to save and stop after ``step``; agreed across hosts when multi-host.

        Must be called by every process in the multi-host case, after every call of the
        step function, with ``step`` counting up by one per call (JAX's service picks the
        highest id any host reported, plus one, as the stop).
        """
        if self.multihost:
            return bool(multihost_utils.reached_preemption_sync_point(int(step)))
        return self.should_stop

    def request_stop(self) -> None:
        """Sets the flag by hand (tests, or a time budget running out)."""
        self._flag.set()

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self._flag.is_set() and self._received == signum:
            # Second identical signal: give the previous handler its say (e.g. KeyboardInterrupt).
            previous = self._previous.get(signum, signal.SIG_DFL)
            signal.signal(signum, previous)
            self._previous.pop(signum, None)
            signal.raise_signal(signum)
            return
        # Only set a flag: a handler runs between bytecodes, anywhere in the loop, and saving
        # from here could interleave with a step or with an async checkpoint in flight.
        if self._received is None:
            self._received = signum
        self._flag.set()

    def __enter__(self) -> "PreemptionGuard":
        if self._active:
            raise RuntimeError("PreemptionGuard is already active; it is not re-entrant")
        self._active = True
        if self.multihost:
            log.info("multi-host run: preemption is agreed through JAX's preemption service")
            return self
        if threading.current_thread() is not threading.main_thread():
            log.warning(
                "PreemptionGuard entered outside the main thread: Python only installs signal "
                "handlers in the main thread, so %s will NOT stop this run cleanly",
                ", ".join(signal.Signals(s).name for s in self.signals),
            )
            return self
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        self._active = False
