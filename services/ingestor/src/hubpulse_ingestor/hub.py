"""Walking the Hub's model list page by page with huggingface_hub's own HTTP layer.

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
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
import orjson
from huggingface_hub import HfApi, hf_raise_for_status
from huggingface_hub.errors import HfHubHTTPError

# Public helpers of huggingface_hub.utils (documented), re-exported there without __all__.
from huggingface_hub.utils import build_hf_headers, http_backoff  # type: ignore[attr-defined]
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
)


class MalformedPage(ValueError):
    """A 200 whose body is not a JSON list of models. Carries the next link, if the headers still had one."""

    def __init__(self, message: str, next_url: str | None) -> None:
        super().__init__(message)
        self.next_url = next_url


RETRYABLE = (MalformedPage, HfHubHTTPError, httpx2.HTTPError)


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    items: list[dict[str, Any]]
    next_url: str | None
    served_on: dt.date  # the Hub's own day (its Date header), so snapshots are dated as the Hub saw them


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


def _parse(response: httpx2.Response, url: str) -> Page:
    next_url = response.links.get("next", {}).get("url")
    try:
        items = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise MalformedPage(f"page is not JSON ({exc})", next_url) from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise MalformedPage("page is not a list of models with ids", next_url)
    return Page(url=url, items=items, next_url=next_url, served_on=_served_on(response.headers))


class _RetryAfterOrExponential:
    """tenacity wait: the server's Retry-After when it sent one, else exponential backoff."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._exponential = wait_exponential(multiplier=base_s, max=max_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            retry_after = exc.response.headers.get("retry-after", "")
            if retry_after.isdigit():
                return float(retry_after)
        return float(self._exponential(state))


class HubPages:
    """Fetches pages of `GET /api/models`, the first one by parameters, the following ones by cursor URL."""

    def __init__(self, settings: IngestorSettings, on_retry: Callable[[str], None] = lambda _: None) -> None:
        self._settings = settings
        self._api = HfApi(endpoint=settings.hf_endpoint, library_name="hubpulse")
        self._headers = build_hf_headers(library_name="hubpulse")
        self._on_retry = on_retry
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
        return [("limit", self._settings.page_limit), *(("expand", e) for e in EXPAND)]

    def _fetch_once(self, url: str) -> Page:
        s = self._settings
        response = http_backoff(
            "GET",
            url,
            params=self._params(url),
            headers=self._headers,
            timeout=s.http_timeout_s,
            max_retries=s.http_retries,
            base_wait_time=s.http_base_wait_s,
            max_wait_time=s.http_max_wait_s,
        )
        hf_raise_for_status(response)
        return _parse(response, url)

    def fetch(self, url: str) -> Page | FailedPage:
        """One page, retried; a page that stays bad comes back as `FailedPage` (blocking: run in a thread)."""
        s = self._settings

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            self._on_retry(type(exc).__name__)

        try:
            for attempt in Retrying(
                stop=stop_after_attempt(s.page_attempts),
                wait=_RetryAfterOrExponential(s.page_retry_wait_s, s.http_max_wait_s),
                retry=retry_if_exception_type(RETRYABLE),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    return self._fetch_once(url)
        except MalformedPage as exc:
            return FailedPage(url=url, error=str(exc), next_url=exc.next_url)
        except RETRYABLE as exc:
            return FailedPage(url=url, error=f"{type(exc).__name__}: {exc}"[:500], next_url=None)
        raise AssertionError("unreachable: tenacity either returns or raises")
