"""Exponential back-off, the one rule every retry loop of the service follows."""

from __future__ import annotations

import random


def backoff_cap(attempt: int, *, first: float, cap: float) -> float:
    """The longest wait before retry number `attempt` (from 0): `first`, doubling, at most `cap`."""
    return min(cap, first * 2.0**attempt)


def jittered_backoff(attempt: int, *, first: float, cap: float) -> float:
    """A wait drawn from 0 to `backoff_cap` ("full jitter").

    Clients that failed together do not retry together, so a throttled service is not hit by
    the same burst again.
    """
    return random.uniform(0, backoff_cap(attempt, first=first, cap=cap))  # noqa: S311 (not a secret)
