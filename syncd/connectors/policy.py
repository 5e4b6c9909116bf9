"""How connectors spend API calls: pacing, the daily budget, retries, and counts.

- :class:`RateLimiter` keeps requests under N per interval in every rolling window. It counts a request from
  the moment its response arrived, which is never earlier than the server saw it, so the server's own
  rolling window can never hold more than N of ours. It tightens when the server's rate-limit headers say
  less room is left than it thought (other apps share the portal's limit).
- :class:`DailyBudget` is syncd's configured share of a system's daily allowance; at the cap it raises
  BudgetExhausted ("budget reached"), and it also stops when the whole org nears its allowance.
- :class:`CallPolicy` wraps each API call: budget check, pacing, counting, and tenacity retries of
  RetriableError with exponential backoff and jitter, honouring Retry-After.

Time is injectable (``clock`` monotonic seconds, ``sleep``, ``now`` for the UTC day), so tests never wait.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from syncd.connectors.base import BudgetState, System
from syncd.errors import BudgetExhausted, RetriableError

__all__ = ["CallPolicy", "DailyBudget", "RateLimiter"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]
Now = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RateLimiter:
    """At most ``limit`` requests in any ``interval`` seconds, counted from each response's arrival."""

    def __init__(
        self, limit: int, interval: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if limit < 1 or interval <= 0:
            raise ValueError("a rate limit needs limit >= 1 and interval > 0")
        self.configured = limit
        self.limit = limit
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._done: deque[float] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.waited = 0.0

    def _evict(self, now: float) -> None:
        while self._done and self._done[0] <= now - self.interval:
            self._done.popleft()

    def acquire(self) -> None:
        """Wait until one more request fits in the window; pair with ``release()`` once it completed."""
        while True:
            with self._lock:
                now = self._clock()
                self._evict(now)
                if len(self._done) + self._in_flight < self.limit:
                    self._in_flight += 1
                    return
                # The window is full of completed requests; the oldest leaves it first.
                wait = self._done[0] + self.interval - now if self._done else self.interval
            wait = max(wait, 0.001)
            self.waited += wait
            self._sleep(wait)

    def release(self) -> None:
        """The request's response arrived (or it failed): it counts from now on."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._done.append(self._clock())

    def observe(self, limit: int | None, remaining: int | None, interval: float | None = None) -> None:
        """Adjust to what the server reported: never above its limit, never more than its remaining room."""
        with self._lock:
            if limit is not None and limit > 0:
                self.limit = min(self.configured, limit)
            if interval is not None and interval > 0:
                self.interval = max(self.interval, interval)
            if remaining is None:
                return
            now = self._clock()
            self._evict(now)
            room = self.limit - len(self._done) - self._in_flight
            # Requests we do not know about (other apps) fill the server's window: count them as just made.
            for _ in range(max(0, room - max(remaining, 0))):
                self._done.append(now)
            while len(self._done) > self.limit:
                self._done.popleft()


class DailyBudget:
    """syncd's share of a system's daily API allowance, counted per UTC day."""

    def __init__(
        self,
        system: System,
        *,
        share: float,
        allowance: int,
        org_ceiling: float = 0.9,
        now: Now = _utcnow,
    ) -> None:
        self.system = system
        self.share = share
        self.allowance = allowance
        self.org_ceiling = org_ceiling
        self._now = now
        self._day = now().date()
        self.spent = 0
        self.org_used: int | None = None
        self.org_limit: int | None = None
        self._lock = threading.Lock()

    @property
    def cap(self) -> int:
        return max(1, math.floor(self.allowance * self.share))

    def _roll(self) -> None:
        today = self._now().date()
        if today != self._day:
            self._day, self.spent = today, 0
            self.org_used = None

    def _seconds_to_midnight(self) -> float:
        now = self._now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return max(1.0, (midnight - now).total_seconds())

    def check(self) -> None:
        """Raise BudgetExhausted when one more call would pass syncd's share or the org's ceiling."""
        with self._lock:
            self._roll()
            label = {"salesforce": "Salesforce", "hubspot": "HubSpot"}[self.system]
            if (
                self.org_used is not None
                and self.org_limit
                and self.org_used >= self.org_ceiling * self.org_limit
            ):
                raise BudgetExhausted(
                    f"{label}: budget reached: the org has used {self.org_used} of {self.org_limit} API calls "
                    f"(budget.{self.system}.org_ceiling = {self.org_ceiling:g}); resuming later",
                    system=self.system,
                    code="ORG_BUDGET",
                    retry_after=self._seconds_to_midnight(),
                )
            if self.spent >= self.cap:
                raise BudgetExhausted(
                    f"{label}: budget reached: {self.spent} of {self.cap} calls today "
                    f"(budget.{self.system}.daily_share = {self.share:g} of {self.allowance}); resuming after 00:00 UTC",
                    system=self.system,
                    code="BUDGET",
                    retry_after=self._seconds_to_midnight(),
                )

    def spend(self) -> None:
        with self._lock:
            self._roll()
            self.spent += 1

    def observe(self, used: int | None, limit: int | None) -> None:
        """The org-wide usage a response reported (Sforce-Limit-Info, X-HubSpot-RateLimit-Daily*)."""
        with self._lock:
            if limit is not None and limit > 0:
                self.org_limit = limit
                self.allowance = limit
            if used is not None and used >= 0:
                self.org_used = used

    def state(self, requests_per_10s: int) -> BudgetState:
        with self._lock:
            self._roll()
            exhausted = self.spent >= self.cap or (
                self.org_used is not None
                and bool(self.org_limit)
                and self.org_used >= self.org_ceiling * (self.org_limit or 0)
            )
            return BudgetState(
                system=self.system,
                day=self._day.isoformat(),
                spent=self.spent,
                cap=self.cap,
                allowance=self.allowance,
                org_used=self.org_used,
                org_limit=self.org_limit,
                exhausted=exhausted,
                requests_per_10s=requests_per_10s,
            )


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, RetriableError) and not isinstance(exc, BudgetExhausted)


class CallPolicy:
    """Budget, pacing, counting and retries around every API call of one connector."""

    def __init__(
        self,
        system: System,
        *,
        requests_per_10s: int,
        search_per_second: int,
        budget: DailyBudget,
        max_attempts: int = 6,
        max_backoff: float = 60.0,
        initial_backoff: float = 0.5,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.system = system
        self.limiter = RateLimiter(requests_per_10s, 10.0, clock=clock, sleep=sleep)
        self.search_limiter = RateLimiter(search_per_second, 1.0, clock=clock, sleep=sleep)
        self.budget = budget
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.counts: Counter[str] = Counter()
        # Every HTTP status the connector saw, per attempt (the connectors fill it as responses arrive).
        self.statuses: Counter[str] = Counter()
        # Refusals for the org's request limit that come with another status (Salesforce: 403).
        self.limit_refusals = 0
        self.retries = 0
        self.delays: list[float] = []
        self.initial_backoff = initial_backoff
        self._random = random.Random()
        # Calls are made from several threads at once (a HubSpot first read lists and searches at once):
        # the counts are kept under a lock (``+=`` on a Counter is a read and a write). The limiters and the
        # budget hold locks of their own.
        self._tally = threading.Lock()

    def saw(self, status: int | str) -> None:
        """Count one response's HTTP status (from any thread)."""
        with self._tally:
            self.statuses[str(status)] += 1

    @property
    def rate_limited(self) -> int:
        """Responses that refused a call for a rate or request limit: every 429 (retries included), plus
        Salesforce's REQUEST_LIMIT_EXCEEDED, which comes as a 403."""
        return self.statuses["429"] + self.limit_refusals

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = float(retry_after)
        else:
            # Exponential backoff with jitter, so that several clients do not retry in step.
            base = self.initial_backoff * 2 ** (state.attempt_number - 1)
            delay = min(self.max_backoff, base + self._random.uniform(0, self.initial_backoff))
        self.delays.append(delay)
        return delay

    def _stop(self, state: RetryCallState) -> bool:
        if stop_after_attempt(self.max_attempts)(state):
            return True
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        # A wait longer than the backoff cap (a daily limit) is for the next cycle, not this one.
        return retry_after is not None and retry_after > self.max_backoff

    def _before_sleep(self, state: RetryCallState) -> None:
        with self._tally:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("%s; retry %d of %d", exc, state.attempt_number, self.max_attempts - 1)

    def call(
        self,
        kind: str,
        fn: Callable[[], T],
        *,
        search: bool = False,
        lane: RateLimiter | None = None,
        count: bool = True,
    ) -> T:
        """Run one API call through budget, pacing and retries; ``fn`` raises syncd errors only.

        ``lane`` is a narrower window some calls share on top of the connector's (a HubSpot first read's
        list pages, which must leave searches their share of the 10 s window). ``count=False`` when the
        caller counts and spends per HTTP request itself (a session hook).
        """
        narrow = [
            limiter for limiter in (self.search_limiter if search else None, lane) if limiter is not None
        ]

        def attempt() -> T:
            self.budget.check()
            # A search (or a lane's call) waits for its own window first: waiting for it while holding a slot
            # of the 10 s window would keep that slot from the other calls.
            for limiter in narrow:
                limiter.acquire()
            self.limiter.acquire()
            if count:
                with self._tally:
                    self.counts[kind] += 1
                self.budget.spend()
            try:
                return fn()
            except RetriableError as exc:
                if exc.code == "REQUEST_LIMIT_EXCEEDED" and exc.status != 429:
                    with self._tally:
                        self.limit_refusals += 1
                raise
            finally:
                self.limiter.release()
                for limiter in narrow:
                    limiter.release()

        retrying = Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception(_retriable),
            sleep=self.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(attempt)
