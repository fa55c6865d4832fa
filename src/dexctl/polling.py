"""Waiting for a condition with a deadline: servers, controllers and caches are eventually
consistent, and a fixed sleep is either too short or wasted time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionTimeoutError(AssertionError):
    """Raised as an assertion so a test that waited in vain reads as a failed expectation."""


class GiveUpError(Exception):
    """Raised by a check when waiting longer cannot help (the process it waits on died)."""


def eventually(
    check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``check`` until it returns a truthy value and return that value.

    Exceptions raised by ``check`` count as "not yet" until the deadline, then the last one
    is chained to the timeout error so the failure says what was last observed. A
    :class:`GiveUpError` ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    last_value: T | None = None
    while True:
        try:
            last_value = check()
            if last_value:
                return last_value
            last_error = None
        except GiveUpError:
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise ConditionTimeoutError(
                f"{what} not met after {timeout:.0f} s (last value: {last_value!r})"
            ) from last_error
        time.sleep(interval)
