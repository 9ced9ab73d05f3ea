"""The HTTP client every real provider adapter shares: one retry policy, one translation into provider errors.

A call is retried with exponential backoff (optionally jittered) on 5xx answers, timeouts and connection
errors; a 429 is retried after its ``Retry-After`` (``retry-after-ms``, delta-seconds or an HTTP date)
unless that wait is longer than ``max_retry_after_s``: then :class:`RateLimited` hands it back to the
caller, which retries the work later instead of blocking a consumer. When the retries are spent the last
failure is raised: :class:`ProviderError` (transient) or :class:`RateLimited`. Other 4xx answers are
final (``ProviderError(transient=False)``); what they say is up to the adapter's ``refusal``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

import httpx

from .clock import Clock, SystemClock
from .faults import backoff_delay
from .providers import ProviderError, RateLimited

Sleep = Callable[[float], Awaitable[None]]
Refusal = Callable[[httpx.Response, str], ProviderError]


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`ProviderHttpClient.request`."""

    params: Mapping[str, Any] | None
    json: Any
    headers: Mapping[str, str] | None
    what: str | None
    retry_statuses: Mapping[int, str] | None
    passthrough: Collection[int]


def path_segment(value: str, what: str) -> str:
    """``value`` as one URL path segment of a provider call: percent-encoded (``/``, ``?``, ``#``, ``%`` and the
    rest; ``:`` and ``@`` stay, as RFC 3986 allows), and refused when it is empty, ``.`` or ``..`` (which would
    walk the provider's path), holds control characters or is absurdly long. A refusal is a final
    :class:`ProviderError` naming ``what`` (the record, not the provider, is wrong)."""
    if not value or value in {".", ".."} or len(value) > 512 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ProviderError(f"{what} is not a usable identifier", transient=False)
    return quote(value, safe=":@")


def _seconds_until(value: str, now: datetime) -> float | None:
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def parse_retry_after(value: str | None, now: datetime, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); ``default`` if absent or bad."""
    seconds = _seconds_until(value, now) if value else None
    return default if seconds is None else seconds


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if present."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    return _seconds_until(value, now or datetime.now(UTC)) if value else None


def refused(response: httpx.Response, what: str) -> ProviderError:
    """The default final error for a 4xx answer: its status and the start of its body."""
    status = response.status_code
    return ProviderError(
        f"{what} refused the request ({status}): {response.text[:300]}", transient=False, status=status
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``jitter`` takes up to that fraction off each backoff at random."""

    max_retries: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = math.inf
    max_retry_after_s: float = 10.0
    jitter: float = 0.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry + 1`` (0-based: the first wait is ``backoff_initial_s``)."""
        return backoff_delay(retry, self.backoff_initial_s, self.backoff_max_s, self.jitter, rng)


class ProviderHttpClient:
    """A small typed layer over :class:`httpx.AsyncClient`: base URL, auth headers, timeout and :class:`RetryPolicy`.

    ``sleep`` and ``clock`` are injected so tests record waits instead of waiting and date a ``Retry-After``.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        refusal: Refusal = refused,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.retry = retry or RetryPolicy()
        self.refusal = refusal
        self.sleep = sleep
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=dict(headers or {}), timeout=timeout_s, transport=transport
        )

    @property
    def base_url(self) -> str:
        """The base URL requests are relative to."""
        return str(self.client.base_url)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        what: str | None = None,
        retry_statuses: Mapping[int, str] | None = None,
        passthrough: Collection[int] = (),
    ) -> httpx.Response:
        """A 2xx answer (or one whose status is in ``passthrough``), after the retry policy.

        ``retry_statuses`` are retried like a 5xx (e.g. ``{202: "is still processing"}``, the text naming the
        final error); ``what`` names the call in error messages (default: the client's name).
        """
        what = what or self.name
        retry_statuses = retry_statuses or {}
        retry = 0
        while True:
            cause: Exception | None = None
            try:
                response = await self.client.request(method, path, params=params, json=json, headers=headers)
            except httpx.TimeoutException as exc:
                # Only a connect or pool timeout is sure to have sent nothing; a read timeout lost the answer.
                sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                error = ProviderError(f"{what} timed out: {exc!r}", transient=True, maybe_performed=sent)
                delay, cause = self.retry.backoff(retry, self.rng), exc
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError)
                error = ProviderError(f"{what} unreachable: {exc!r}", transient=True, maybe_performed=sent)
                delay, cause = self.retry.backoff(retry, self.rng), exc
            else:
                status = response.status_code
                if status == 429:
                    delay = self._retry_after(response, retry)
                    error = RateLimited(delay, f"{what} rate limited (retry after {delay:.1f}s)")
                    if delay > self.retry.max_retry_after_s:
                        raise error
                elif status >= 500 or status in retry_statuses:
                    error = ProviderError(
                        f"{what} {retry_statuses.get(status) or f'answered {status}'}", transient=True, status=status
                    )
                    delay = self.retry.backoff(retry, self.rng)
                elif response.is_success or status in passthrough:
                    return response
                else:
                    raise self.refusal(response, what)
            if retry >= self.retry.max_retries:
                raise error from cause
            retry += 1
            await self.sleep(delay)

    def _retry_after(self, response: httpx.Response, retry: int) -> float:
        wait = retry_after_seconds(response.headers, self.clock.now())
        return self.retry.backoff(retry, self.rng) if wait is None else wait

    async def request_json(self, method: str, path: str, **options: Unpack[RequestOptions]) -> Any:
        """The decoded JSON of :meth:`request`'s answer; invalid JSON is a transient error."""
        response = await self.request(method, path, **options)
        return decode_json(response, options.get("what") or self.name)

    async def request_object(
        self, method: str, path: str, *, non_object_transient: bool = False, **options: Unpack[RequestOptions]
    ) -> dict[str, Any]:
        """Like :meth:`request_json` for an API that answers a JSON object; anything else is an error."""
        data = await self.request_json(method, path, **options)
        if not isinstance(data, dict):
            what = options.get("what") or self.name
            raise ProviderError(f"{what} answer is not a JSON object", transient=non_object_transient)
        return data


def decode_json(response: httpx.Response, what: str) -> Any:
    """The answer's JSON; a provider answering something else is a transient :class:`ProviderError`."""
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderError(f"{what} answered with invalid JSON", transient=True, status=response.status_code) from exc
