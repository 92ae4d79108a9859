"""The one error family of metagrad: ``MetagradError`` and its kinds.

Every error caused by what a user gave (a config, a path, a run folder, a device, data) is a
``MetagradError``; the command line prints it as one line (``metagrad: error: ...``) and exits
with status 2, while any other exception is a bug in metagrad and keeps its traceback. Each kind
also derives from the built-in exception a Python user would catch (``ConfigError`` is a
``ValueError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

import math
import signal
from typing import Iterable, Optional

__all__ = ["MetagradError", "ConfigError", "InputError", "InputTypeError", "InputIndexError", "MissingKeyError",
           "MissingFileError", "RunError", "DivergenceError", "DeviceError", "TimeLimitReached", "Interrupted",
           "check_int", "check_finite", "is_finite_number", "did_you_mean", "one_line",
           "check_positive"]


class MetagradError(Exception):
    """Base class: bad input from the user, reported in one line that names the value and the fix."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class ConfigError(MetagradError, ValueError):
    """A bad config: unknown key, wrong type or invalid value (one line, names the key)."""


class InputError(MetagradError, ValueError):
    """A bad value, shape or setting given to a metagrad function or found in a data file."""


class InputTypeError(MetagradError, TypeError):
    """An argument of the wrong type (a list where a ``TaskBatch`` belongs, ...)."""


class InputIndexError(MetagradError, IndexError):
    """An index out of range (a task of a batch, a member of a population)."""


class MissingKeyError(MetagradError, KeyError):
    """A dict of parameters or meta-parameters without a key a rule needs."""

    def __str__(self) -> str:   # KeyError quotes its message; a one-line error should not
        return one_line(str(self.args[0])) if self.args else ""


class MissingFileError(MetagradError, FileNotFoundError):
    """A data file that is not where it should be (the message names it and where to put it)."""


class RunError(MetagradError, RuntimeError):
    """A run folder that cannot be used (missing, locked, unreadable, or from another version)."""


class DivergenceError(MetagradError, FloatingPointError):
    """Meta-training diverged (a non-finite or exploded loss, gradient or optimiser state)."""


class DeviceError(MetagradError, RuntimeError):
    """A device that does not exist on this machine (``--device cuda`` without a GPU)."""


class TimeLimitReached(Exception):
    """Not an error: training reached its wall-clock limit (``--time-limit``, ``fit(deadline=)``),
    wrote its checkpoint and stopped; the same command (``train --resume`` for a run) continues it."""

    def __init__(self, where: str, iteration: int, iterations: int, hint: str = "") -> None:
        super().__init__(f"{where}: stopped at the time limit at iteration {iteration} of {iterations} "
                         f"(checkpointed){'; continue with: ' + hint if hint else ''}")
        self.where, self.iteration, self.iterations = where, iteration, iterations


class Interrupted(Exception):
    """Not an error: training received SIGINT or SIGTERM (``metagrad.interrupts``), finished the
    iteration, wrote its checkpoint and stopped; the command line exits with ``128 + signum``, as a
    killed process would, and the same command (``train --resume`` for a run) continues exactly."""

    def __init__(self, where: str, iteration: Optional[int], iterations: Optional[int], signum: int,
                 hint: str = "") -> None:
        at = f" at iteration {iteration} of {iterations}" if iteration is not None else ""
        super().__init__(f"{where}: stopped by {signal.Signals(signum).name}{at} (checkpointed)"
                         f"{'; continue with: ' + hint if hint else ''}")
        self.where, self.iteration, self.iterations, self.signum = where, iteration, iterations, signum


# Each control character as repr writes it: a line break becomes the two characters \ and n.
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(32), 127)}


def one_line(message: str) -> str:
    """``message`` with its line breaks and other control characters escaped, so that an error
    naming what the user typed (a config key, a path) stays one line whatever that holds."""
    return message.translate(_ESCAPES)


def did_you_mean(value: object, options: Iterable[str]) -> str:
    """``" (did you mean 'sine-maml'?)"`` when ``value`` is a near miss of one of ``options`` (a typo),
    else ``""``: appended to an "unknown name" error, so that the fix is the first thing read."""
    import difflib
    options = list(options)
    same = [o for o in options if o.lower() == str(value).lower()]   # a difference of case alone
    close = same or difflib.get_close_matches(str(value), options, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_int(where: str, name: str, v: object, lo: int = 0, error: type[Exception] = ConfigError) -> int:
    """``v`` as an integer ``>= lo`` (booleans rejected), else ``error`` naming ``name`` and ``v``."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise error(f"{where}: {name} must be an integer >= {lo}, got {v!r}")
    return v


def is_finite_number(v: object) -> bool:
    """Whether ``v`` is an int or float (not a bool) and finite."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def check_finite(where: str, name: str, v: object, error: type[Exception] = ConfigError) -> float:
    """``v`` as a finite number (booleans rejected), else ``error`` naming ``name`` and ``v``."""
    if not is_finite_number(v):
        raise error(f"{where}: {name} must be a finite number, got {v!r}")
    return float(v)


def check_positive(where: str, name: str, v: object, optional: bool = False,
                   error: type[Exception] = ConfigError) -> float | None:
    """``v`` as a finite number ``> 0`` (or ``None`` when ``optional``), else ``error`` naming it."""
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < float("inf")):
        raise error(f"{where}: {name} must be a finite positive number, got {v!r}")
    return float(v)
