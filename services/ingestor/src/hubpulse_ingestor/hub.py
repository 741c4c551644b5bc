"""Walking the Hub's model list page by page with huggingface_hub's own HTTP layer.

The walk asks for `sort=createdAt`: huggingface.co's default order is the live trendingScore, and its cursor
holds the last item's value, so models whose score moves during a walk are listed twice or never (a creation
date never moves; ties are ordered by `_id`). It sends no token: listing with one includes the caller's
private repos. It paces itself by the RateLimit headers before the quota runs out.

`HfApi.list_models` yields models, but neither exposes the `Link: rel="next"` cursor (needed to checkpoint
and resume a killed walk) nor survives a bad page (its generator dies with the first error). So this walks
the same endpoint with the same parameters through huggingface_hub's `http_backoff` (which retries 429/5xx
and network errors, honouring Retry-After) and `hf_raise_for_status`; tenacity retries a page on top of that
(malformed or truncated JSON, a storm longer than huggingface_hub's retries). A page that stays bad is
reported and skipped when its response still says where the next page is.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx2
import orjson
from huggingface_hub import HfApi, hf_raise_for_status
from huggingface_hub.errors import HfHubHTTPError

# Public helpers of huggingface_hub.utils (documented), re-exported there without __all__.
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    build_hf_headers,
    fix_hf_endpoint_in_url,
    http_backoff,
    parse_ratelimit_headers,
)
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from hubpulse_ingestor.settings import IngestorSettings

# The fields a snapshot needs; huggingface_hub's names for `expand`.
EXPAND: tuple[str, ...] = (
    "author",
    "downloads",
    "downloadsAllTime",
    "likes",
    "trendingScore",
    "createdAt",
    "lastModified",
    "pipeline_tag",
    "library_name",
    "tags",
    "private",
)
# huggingface_hub's name for the sort (hf_api.list_models maps sort="created_at" to it); descending only
WALK_SORT = "createdAt"
TRENDING_SORT = "trendingScore"


class MalformedPage(ValueError):
    """A 200 whose body is not a JSON list of models. Carries the next link, if the headers still had one."""

    def __init__(self, message: str, next_url: str | None) -> None:
        super().__init__(message)
        self.next_url = next_url


RETRYABLE = (MalformedPage, HfHubHTTPError, httpx2.HTTPError)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    items: list[dict[str, Any]]
    next_url: str | None
    served_on: dt.date  # the Hub's own day (its Date header), so snapshots are dated as the Hub saw them
    skipped_items: int = 0  # entries that were not objects with a string id (counted as rows skipped)


@dataclass(frozen=True, slots=True)
class FailedPage:
    url: str
    error: str
    next_url: str | None


def _served_on(headers: httpx2.Headers) -> dt.date:
    raw = headers.get("date")
    if raw:
        try:
            return parsedate_to_datetime(raw).astimezone(dt.UTC).date()
        except (TypeError, ValueError):
            pass
    return dt.datetime.now(dt.UTC).date()


def on_endpoint(url: str, endpoint: str) -> str:
    """`url` on `endpoint`: a mirror or proxy (HF_ENDPOINT) passes the Hub's `Link` headers through as they are,
    naming huggingface.co, and the walk would leave the mirror from its second page on (huggingface_hub's own
    listings correct them the same way)."""
    fixed: str = fix_hf_endpoint_in_url(url, endpoint)
    return fixed


def _models(response: httpx2.Response, what: str, next_url: str | None) -> list[Any]:
    try:
        items = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise MalformedPage(f"{what} is not JSON ({exc})", next_url) from exc
    if not isinstance(items, list):
        raise MalformedPage(f"{what} is not a list of models", next_url)
    return items


def _parse(response: httpx2.Response, url: str, endpoint: str) -> Page:
    next_url = response.links.get("next", {}).get("url")
    if next_url is not None:
        next_url = on_endpoint(next_url, endpoint)
    items = _models(response, "page", next_url)
    return Page(url=url, items=items, next_url=next_url, served_on=_served_on(response.headers))


@dataclass(frozen=True, slots=True)
class Quota:
    """The Hub's RateLimit-Policy: `limit` requests per `window_s` seconds."""

    limit: int
    window_s: int

    def walk_seconds(self, pages: int) -> float:
        return pages * self.window_s / self.limit


class _RetryAfterOrExponential:
    """tenacity wait: the server's Retry-After, or its RateLimit reset when the quota is spent, else
    exponential backoff (huggingface.co's 429 does not promise a Retry-After)."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._exponential = wait_exponential(multiplier=base_s, max=max_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            retry_after = exc.response.headers.get("retry-after", "")
            if retry_after.isdigit():
                return float(retry_after)
            limit = parse_ratelimit_headers(exc.response.headers)
            if exc.response.status_code == 429 and limit is not None and limit.remaining == 0:
                return float(limit.reset_in_seconds) + 1.0
        return float(self._exponential(state))


class HubPages:
    """Fetches pages of `GET /api/models`, the first one by parameters, the following ones by cursor URL."""

    def __init__(self, settings: IngestorSettings, on_retry: Callable[[str], None] = lambda _: None) -> None:
        self._settings = settings
        self._api = HfApi(endpoint=settings.hf_endpoint, library_name="hubpulse")
        # token=False: no HF_TOKEN or cached login is sent; with one, the list includes the caller's private repos
        self._headers = build_hf_headers(token=False, library_name="hubpulse")
        self._on_retry = on_retry
        self.quota: Quota | None = None
        self.paced_s = 0.0  # seconds spent waiting for the quota window before it ran out
        self.served_on: dt.date | None = None  # the Hub's day, from the Date of its last answer
        # huggingface_hub's client logs every request at INFO: 2,000 lines per cycle of the full Hub
        logging.getLogger("httpx2").setLevel(logging.WARNING)

    @property
    def endpoint(self) -> str:
        return str(self._api.endpoint)

    def first_url(self) -> str:
        return f"{self.endpoint}/api/models"

    def _params(self, url: str) -> list[tuple[str, Any]] | None:
        # A cursor URL already carries every parameter; only the first request needs them.
        if url != self.first_url():
            return None
        return [("sort", WALK_SORT), ("limit", self._settings.page_limit), *(("expand", e) for e in EXPAND)]

    def _get(self, url: str, params: list[tuple[str, Any]] | None) -> httpx2.Response:
        s = self._settings
        response = http_backoff(
            "GET",
            url,
            params=params,
            headers=self._headers,
            timeout=s.http_timeout_s,
            max_retries=s.http_retries,
            base_wait_time=s.http_base_wait_s,
            max_wait_time=s.http_max_wait_s,
        )
        self._pace(response.headers)
        hf_raise_for_status(response)
        self.served_on = _served_on(response.headers)
        return response

    def _pace(self, headers: httpx2.Headers) -> None:
        """Before the quota runs out, wait for its window to reset instead of spending the last requests on 429s."""
        limit = parse_ratelimit_headers(headers)
        if limit is None:
            return
        if limit.limit and limit.window_seconds:
            self.quota = Quota(limit.limit, limit.window_seconds)
        if limit.remaining <= self._settings.ratelimit_reserve:
            wait_s = float(limit.reset_in_seconds) + 1.0
            self.paced_s += wait_s
            time.sleep(wait_s)

    def _fetch_once(self, url: str) -> Page:
        return _parse(self._get(url, self._params(url)), url, self.endpoint)

    def trending(self, top: int) -> dict[str, int]:
        return self._retrying(lambda: self._trending_once(top))

    def _trending_once(self, top: int) -> dict[str, int]:
        """Rank (1 = first) of the day's `top` most trending public models, by `_id` and by id: huggingface.co's
        trending order is `sort=trendingScore` (what /models?sort=trending shows; /api/trending mixes datasets
        and Spaces in)."""
        response = self._get(
            self.first_url(),
            [("sort", TRENDING_SORT), ("limit", top), ("expand", "trendingScore"), ("expand", "private")],
        )
        items = _models(response, "trending page", None)
        public = [
            i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str) and i.get("private") is not True
        ]
        ranks: dict[str, int] = {}
        for rank, item in enumerate(public[:top], start=1):
            ranks[item["id"]] = rank
            if isinstance(item.get("_id"), str):
                ranks[item["_id"]] = rank
        return ranks

    def _retrying(self, fn: Callable[[], R]) -> R:
        """fn, retried by tenacity on top of huggingface_hub's own retries; the last error is raised."""
        s = self._settings

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            self._on_retry(type(exc).__name__)

        for attempt in Retrying(
            stop=stop_after_attempt(s.page_attempts),
            wait=_RetryAfterOrExponential(s.page_retry_wait_s, s.http_max_wait_s),
            retry=retry_if_exception_type(RETRYABLE),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return fn()
        raise AssertionError("unreachable: tenacity either returns or raises")

    def fetch(self, url: str) -> Page | FailedPage:
        """One page, retried; a page that stays bad comes back as `FailedPage` (blocking: run in a thread). A cursor
        checkpointed before the walk learnt to stay on the mirror is moved onto it too."""
        url = on_endpoint(url, self.endpoint)
        try:
            return self._retrying(lambda: self._fetch_once(url))
        except MalformedPage as exc:
            return FailedPage(url=url, error=str(exc), next_url=exc.next_url)
        except RETRYABLE as exc:
            return FailedPage(url=url, error=f"{type(exc).__name__}: {exc}"[:500], next_url=None)
