"""HTTP for the API providers: one httpx client per provider, a token-bucket rate limit
(aiolimiter), timeouts, and retries with exponential backoff and jitter that honour Retry-After
(tenacity). Every request, retry and wait is counted for the audit.

The API key travels only in a request header (never in a URL, so it cannot reach an exception
message or a log line), and every text that leaves this module goes through `scrub`.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urljoin, urlsplit

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .base import Piece, ProviderError, RateLimit

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass
class RetryPolicy:
    retries: int = 5  # retries after the first attempt
    backoff: float = 1.0  # first backoff (seconds); doubles each retry, plus up to `backoff` jitter
    max_backoff: float = 60.0
    max_retry_after: float = 300.0  # a longer Retry-After fails the request instead of waiting


@dataclass
class HttpStats:
    """Counters of one provider over a run."""

    requests: int = 0
    outcomes: Counter = field(default_factory=Counter)  # "HTTP 200", "HTTP 429", "timeout", ... (sums to requests)
    retry_causes: Counter = field(default_factory=Counter)
    rate_limit_wait: float = 0.0  # seconds spent waiting for a token (summed over requests)
    pause_wait: float = 0.0  # seconds spent in a provider-wide pause after a 429
    retry_wait: float = 0.0  # seconds slept between attempts
    http_seconds: float = 0.0  # seconds inside requests (summed over requests)

    def audit(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "outcomes": dict(sorted(self.outcomes.items())),
            "retries": sum(self.retry_causes.values()), "retry_causes": dict(sorted(self.retry_causes.items())),
            "rate_limit_wait_s": round(self.rate_limit_wait, 3), "pause_after_429_s": round(self.pause_wait, 3),
            "retry_wait_s": round(self.retry_wait, 3), "http_s": round(self.http_seconds, 3),
        }


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


class HttpSession:
    """GET JSON from one provider with rate limit, retries and counters; see the module doc."""

    def __init__(self, name: str, base_url: str, headers: dict[str, str], secret: str, rate: RateLimit | None,
                 timeout: float, policy: RetryPolicy, max_connections: int,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.policy = policy
        self.stats = HttpStats()
        self.limiter = AsyncLimiter(rate.requests, rate.seconds) if rate else None
        self._sleep = sleep
        self._paused_until = 0.0
        self.fatal: str | None = None  # set after a fatal error: no further requests
        self.client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max(max_connections, 1)), follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def scrub(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text

    def same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    # ---------------------------------------------------------------- one attempt

    async def _wait_for_turn(self) -> None:
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            self.stats.pause_wait += pause
            await self._sleep(pause)
        if self.limiter is not None:
            started = time.monotonic()
            await self.limiter.acquire()
            self.stats.rate_limit_wait += time.monotonic() - started

    async def _once(self, url: str, params: dict[str, Any] | None, piece: Piece | None) -> Any:
        if self.fatal:
            raise ProviderError("not sent", f"an earlier request failed fatally ({self.fatal})", fatal=True)
        await self._wait_for_turn()
        self.stats.requests += 1
        if piece is not None:
            piece.requests += 1
        started = time.monotonic()
        try:
            response = await self.client.get(url, params=params)
            body = response.content
        except httpx.TimeoutException as exc:
            self.stats.outcomes["timeout"] += 1
            raise ProviderError("timeout", type(exc).__name__, retryable=True) from None
        except httpx.TransportError as exc:
            self.stats.outcomes["connection error"] += 1
            raise ProviderError("connection error", self.scrub(f"{type(exc).__name__}: {exc}"), retryable=True) from None
        finally:
            self.stats.http_seconds += time.monotonic() - started
        status = response.status_code
        if status >= 300:
            self.stats.outcomes[f"HTTP {status}"] += 1
        if 300 <= status < 400:
            raise ProviderError(f"HTTP {status}", "unexpected redirect (not followed)")
        if status == 429:
            after = parse_retry_after(response.headers.get("Retry-After"))
            if after is not None and after > self.policy.max_retry_after:
                raise ProviderError("HTTP 429", f"Retry-After {after:g} s exceeds the limit of "
                                    f"{self.policy.max_retry_after:g} s", retryable=False)
            if after:
                self._paused_until = max(self._paused_until, time.monotonic() + after)
            raise ProviderError("HTTP 429", f"Retry-After {after:g} s" if after is not None else "no Retry-After",
                                retryable=True, retry_after=after)
        if status in (401, 403):
            self.fatal = f"HTTP {status}"
            raise ProviderError(f"HTTP {status}", "the API key was refused (check the environment variable)",
                                fatal=True)
        if status >= 400:
            snippet = self.scrub(body[:200].decode("utf-8", "replace"))
            raise ProviderError(f"HTTP {status}", snippet, retryable=status in RETRYABLE_STATUS)
        try:
            data = response.json()
        except ValueError as exc:
            self.stats.outcomes[f"HTTP {status}, invalid JSON"] += 1
            raise ProviderError("invalid JSON", f"{len(body)} bytes, {type(exc).__name__} (truncated response?)",
                                retryable=True) from None
        self.stats.outcomes[f"HTTP {status}"] += 1
        return data

    # ---------------------------------------------------------------- with retries

    def _wait(self, state) -> float:
        base = wait_exponential_jitter(multiplier=self.policy.backoff, max=self.policy.max_backoff,
                                       jitter=self.policy.backoff)(state)
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None) or 0.0
        return max(base, after)

    async def get_json(self, path_or_url: str, params: dict[str, Any] | None = None, piece: Piece | None = None) -> Any:
        """The decoded JSON body; ProviderError once the retries are used up or on a final error."""
        if path_or_url.startswith(("http://", "https://")) and not self.same_origin(path_or_url):
            raise ProviderError("schema", f"refusing to follow a link to another host ({urlsplit(path_or_url).netloc})")
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else urljoin(self.base_url + "/", path_or_url.lstrip("/"))

        async def before_sleep(state) -> None:
            exc = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            cause = getattr(exc, "cause", type(exc).__name__)
            self.stats.retry_causes[cause] += 1
            self.stats.retry_wait += wait
            if piece is not None:
                piece.retries.append({"cause": cause, "detail": self.scrub(getattr(exc, "detail", "")),
                                      "wait_s": round(wait, 3)})

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(url, params, piece)
        raise AssertionError("unreachable")  # pragma: no cover
