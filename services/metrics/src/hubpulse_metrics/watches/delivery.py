"""Delivering alerts: a signed webhook (Standard Webhooks), an e-mail (SMTP), and `watch.alerts.v1`.

Alerts are stored first with each channel `pending`; this loop leases them one by one (so that one replica
delivers each), delivers every pending channel and records each attempt. A crash in between leaves the alert
pending and its lease runs out: at least once, and receivers dedupe on `webhook-id` (the alert id).

A webhook that keeps failing for a transient reason (a network error, a 5xx, a 429) is tried again in later
rounds spread over about a day, as the Standard Webhooks spec schedules them (`watch_webhook_retry_s`), and
never sooner than the receiver's `Retry-After` asks; the alert stays pending, leased until its next round. A 410
means the receiver removed the endpoint: the watch's webhook is switched off (the spec's advice), and the watch
says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import email.utils
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, NamedTuple

import aiosmtplib
import httpx
import orjson
from httpx_secure import SSRFProtectionError, httpx_ssrf_protection
from prometheus_client import Counter, Histogram
from pymongo.asynchronous.database import AsyncDatabase
from standardwebhooks import Webhook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.stop import stop_base

from hubpulse_common.events import WatchAlertEvent
from hubpulse_common.kafka import EventBus
from hubpulse_common.logging import get_logger
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches import repository, service

log = get_logger(__name__)
Doc = dict[str, Any]

DELIVERED = Counter("hubpulse_watch_deliveries_total", "Alert deliveries by channel and outcome", ["channel", "ok"])
LAG = Histogram(
    "hubpulse_watch_delivery_lag_seconds",
    "From the score's event to the alert delivered, per channel",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LEASE = timedelta(seconds=120)
CONCURRENCY = 16
# RFC 5322's line limit: at 78 the unsubscribe URL is folded into encoded words that mail clients ignore
# (flattened here: aiosmtplib would flatten at 78).
MAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)


# The longest wait inside one round (the backoff's cap too): a receiver that asks for more (Retry-After) is tried
# again in a later round.
ROUND_WAIT_MAX_S = 60.0


class _Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """An HTTP `Retry-After` (RFC 9110 10.2.3: seconds, or an HTTP date) as seconds from `now`; None when absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _asked(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc.retry_after_s or 0.0 if isinstance(exc, _Retryable) else 0.0


def _within_round(backoff: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    """The backoff, or the receiver's Retry-After where that is longer."""
    return lambda state: max(backoff(state), _asked(state))


class _AsksBeyondRound(stop_base):
    """Ends the round when the receiver asks for a longer wait than a round waits: a later round honours it."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        return _asked(retry_state) > ROUND_WAIT_MAX_S


@dataclass(frozen=True)
class WebhookOutcome:
    """What one round of a webhook's attempts came to."""

    sent: bool
    transient: bool = False  # worth a later round (network, 5xx, 429)
    retry_after_s: float | None = None  # what the receiver asked for last (Retry-After)
    gone: bool = False  # 410: the receiver removed the endpoint


class ChannelResult(NamedTuple):
    state: str  # a DeliveryState
    retry_at: datetime | None = None  # pending: its next round


async def _judged(sending: Awaitable[bool]) -> ChannelResult:
    return ChannelResult("sent" if await sending else "failed")


def unsubscribe_token(settings: MetricsSettings, watch_id: str) -> str:
    key = settings.watch_link_secret.get_secret_value().encode()
    return hmac.new(key, f"unsubscribe:{watch_id}".encode(), hashlib.sha256).hexdigest()


def unsubscribe_url(settings: MetricsSettings, watch_id: str) -> str:
    token = unsubscribe_token(settings, watch_id)
    return f"{settings.public_url.rstrip('/')}/v1/watches/{watch_id}/unsubscribe?token={token}"


def address_refusal(
    host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: MetricsSettings
) -> str | None:
    """Why webhooks may not go to this address (private or loopback, and the operator did not allow it), or None."""
    if address.is_loopback:
        if not settings.watch_webhook_allow_loopback:
            return f"{host} is a loopback address ({address}); the operator does not allow those"
    elif not address.is_global and not settings.watch_webhook_allow_private:
        return f"{host} is a private address ({address}); the operator does not allow those"
    return None


async def webhook_refusal(url: str, settings: MetricsSettings) -> str | None:
    """Why this URL may not receive webhooks (`address_refusal` of any address its name resolves to), or None.

    Checked when a watch is saved (a clear 422). Deliveries check the address they connect to (`webhook_client`):
    a name may resolve to a public address when saved and to a private one later.
    """
    host = httpx.URL(url).host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        if refusal := address_refusal(host, ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]), settings):
            return refusal
    return None


def webhook_client(settings: MetricsSettings) -> httpx.AsyncClient:
    """The HTTP client of webhook deliveries: it connects only to an address `address_refusal` admits, the one it
    checked (httpx-secure resolves once and connects to that address, so DNS rebinding between a check and the
    connection cannot reach a private or loopback address; docs/decisions/metrics.md)."""
    return httpx_ssrf_protection(
        httpx.AsyncClient(timeout=settings.watch_webhook_timeout_s),
        check_globally_reachable=False,  # the operator's allowances decide, in address_refusal
        custom_validator=lambda host, address, _port: address_refusal(host, address, settings) is None,
        dns_cache_ttl=60,
    )


def alert_body(alert: Doc) -> dict[str, Any]:
    """The alert as receivers see it (the WatchAlertEvent fields)."""
    fields = WatchAlertEvent.model_fields
    return {k: alert[k] for k in fields if k in alert and k not in ("schema_version", "occurred_at")} | {
        "alert_id": alert["_id"],
        "created_at": alert["created_at"].isoformat() if isinstance(alert["created_at"], datetime) else None,
    }


def _transient_mail_failure(exc: BaseException) -> bool:
    """Worth sending again: a relay that cannot be reached or answers 4xx (greylisting, a full queue). A 5xx is
    permanent (RFC 5321 4.2.1: no such user, refused), and the same message would meet it again."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return any(refused.code < 500 for refused in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code < 500
    return isinstance(exc, aiosmtplib.SMTPException | OSError)


class Deliverer:
    def __init__(
        self, db: AsyncDatabase[Doc], bus: EventBus, settings: MetricsSettings, client: httpx.AsyncClient
    ) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self.client = client
        self.wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- the loops -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver pending alerts as they come (the score handler sets `wake`), forever."""
        try:
            while True:
                self.wake.clear()
                while (alert := await repository.claim_pending(self.db, LEASE)) is not None:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver_released(alert))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.watch_delivery_poll_s)
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def run_digests(self) -> None:
        while True:
            await asyncio.sleep(self.settings.watch_digest_interval_s)
            await self.send_digests()

    async def _deliver_released(self, alert: Doc) -> None:
        try:
            await self.deliver(alert)
        except Exception:
            log.exception("watch.delivery_failed", alert_id=alert["_id"])  # left pending: retried after the lease
        finally:
            self._slots.release()

    # ---- one alert -------------------------------------------------------------------------------------------

    async def deliver(self, alert: Doc) -> dict[str, str]:
        watch = await repository.watch_doc(self.db, alert["watch_id"]) or {"channels": {}}
        channels = watch.get("channels") or {}
        states: dict[str, str] = dict(alert["deliveries"])
        sends: dict[str, Callable[[], Awaitable[ChannelResult]]] = {"kafka": lambda: _judged(self.publish(alert))}
        if channels.get("webhook"):
            sends["webhook"] = lambda: self._alert_webhook(alert, watch)
        if channels.get("email"):
            sends["email"] = lambda: _judged(self.email(channels["email"], alert["watch_id"], [alert]))
        due = [c for c, state in states.items() if state == "pending"]
        results = await asyncio.gather(*(sends[c]() if c in sends else _off() for c in due))
        for channel, result in zip(due, results, strict=True):
            states[channel] = result.state
            if result.state == "sent":
                LAG.labels(channel).observe(max(0.0, (datetime.now(UTC) - alert["score_at"]).total_seconds()))
        retry_at = min((r.retry_at for r in results if r.retry_at is not None), default=None)
        await repository.finish_delivery(self.db, alert["_id"], states, retry_at)
        return states

    async def _alert_webhook(self, alert: Doc, watch: Doc) -> ChannelResult:
        """One round for an alert's webhook; a transient failure is left pending for the next round, if any."""
        url = watch["channels"]["webhook"]
        outcome = await self.webhook(url, watch["webhook_secret"], alert["_id"], "watch.alert", alert_body(alert))
        if outcome.gone:
            await self._switch_off(watch["_id"], url)
        if not outcome.transient:
            return ChannelResult("sent" if outcome.sent else "failed")
        rounds = alert.get("retry_rounds", 0)
        schedule = self.settings.watch_webhook_retry_s
        if rounds >= len(schedule):
            log.error("watch.webhook_given_up", url=url, alert_id=alert["_id"], rounds=rounds + 1)
            return ChannelResult("failed")
        wait = max(schedule[rounds], outcome.retry_after_s or 0.0)
        return ChannelResult("pending", datetime.now(UTC) + timedelta(seconds=wait))

    async def _switch_off(self, watch_id: str, url: str) -> None:
        reason = "the receiver answered 410 Gone: the endpoint was removed"
        if await repository.disable_webhook(self.db, watch_id, url, reason):
            log.warning("watch.webhook_disabled", watch_id=watch_id, url=url, reason=reason)

    async def publish(self, alert: Doc) -> bool:
        await self.bus.publish(
            WatchAlertEvent.model_validate({**alert_body(alert), "occurred_at": alert["created_at"]})
        )
        DELIVERED.labels("kafka", "true").inc()
        return True

    async def _record(self, alert_ids: Sequence[str], channel: str, number: int, ok: bool, **extra: Any) -> None:
        DELIVERED.labels(channel, str(ok).lower()).inc()
        at = datetime.now(UTC)
        for alert_id in alert_ids:
            await repository.record_attempt(
                self.db, {"alert_id": alert_id, "channel": channel, "attempt": number, "at": at, "ok": ok, **extra}
            )

    async def webhook(
        self, url: str, secret: str, message_id: str, kind: str, data: dict[str, Any], alert_ids: Sequence[str] = ()
    ) -> WebhookOutcome:
        """One round: POST `{"type", "timestamp", "data"}` signed per attempt, tried again within the round with
        backoff (or after the receiver's Retry-After, up to ROUND_WAIT_MAX_S) on a network error, a 5xx or a 429."""
        ids = list(alert_ids) or [message_id]
        signer = Webhook(secret)
        number = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.watch_webhook_attempts) | _AsksBeyondRound(),
                wait=_within_round(
                    wait_exponential(multiplier=self.settings.watch_webhook_backoff_s, max=ROUND_WAIT_MAX_S)
                ),
                retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
                reraise=True,
            ):
                with attempt:
                    number += 1
                    now = datetime.now(UTC)
                    body = orjson.dumps({"type": kind, "timestamp": now.isoformat(), "data": data})
                    headers = {
                        "content-type": "application/json",
                        "webhook-id": message_id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": signer.sign(message_id, now, body),
                    }
                    try:
                        response = await self.client.post(url, content=body, headers=headers)
                    except SSRFProtectionError as exc:  # an address the rule refuses: not worth another attempt
                        refusal = (
                            address_refusal(exc.hostname, exc.ip_addr, self.settings) if exc.ip_addr else None
                        ) or str(exc)
                        await self._record(ids, "webhook", number, False, error=refusal)
                        log.warning("watch.webhook_refused", url=url, reason=refusal)
                        return WebhookOutcome(sent=False)
                    except httpx.TransportError as exc:
                        await self._record(ids, "webhook", number, False, error=f"{type(exc).__name__}: {exc}"[:300])
                        raise
                    status = response.status_code
                    await self._record(ids, "webhook", number, status < 300, status=status)
                    if status >= 500 or status == 429:
                        asked = retry_after_seconds(response.headers.get("retry-after"), datetime.now(UTC))
                        raise _Retryable(f"HTTP {status}", asked)
                    if status == 410:
                        return WebhookOutcome(sent=False, gone=True)
                    if status >= 300:  # a 4xx says the receiver refuses it: asking again will not help
                        return WebhookOutcome(sent=False)
        except (httpx.TransportError, _Retryable) as exc:
            log.warning("watch.webhook_failed", url=url, message_id=message_id, attempts=number, error=str(exc)[:300])
            asked = exc.retry_after_s if isinstance(exc, _Retryable) else None
            return WebhookOutcome(sent=False, transient=True, retry_after_s=asked)
        return WebhookOutcome(sent=True)

    async def email(self, to: str, watch_id: str, alerts: Sequence[Doc]) -> bool:
        settings = self.settings
        ids = [a["_id"] for a in alerts]
        if settings.smtp_host is None:
            await self._record(ids, "email", 1, False, error="no SMTP server configured (HUBPULSE_SMTP_HOST)")
            return False
        unsubscribe = unsubscribe_url(settings, watch_id)
        message = EmailMessage(policy=MAIL_POLICY)
        message["From"] = settings.smtp_from
        message["To"] = to
        message["Subject"] = service.subject(alerts)
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058: a POST to it unsubscribes
        # RFC 5322 requires Date (and asks for Message-ID): the message goes out as bytes, so no relay adds them
        message["Date"] = email.utils.format_datetime(datetime.now(UTC))
        message["Message-ID"] = email.utils.make_msgid(domain=settings.smtp_sender.rpartition("@")[2] or None)
        message.set_content(service.email_text(alerts, unsubscribe))
        message.add_alternative(service.email_html(alerts, unsubscribe), subtype="html")
        number = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(settings.watch_email_attempts),
                wait=wait_exponential(multiplier=settings.watch_webhook_backoff_s, max=ROUND_WAIT_MAX_S),
                retry=retry_if_exception(_transient_mail_failure),
                reraise=True,
            ):
                with attempt:
                    number += 1
                    try:
                        await aiosmtplib.send(
                            message.as_bytes(),
                            sender=settings.smtp_sender,
                            recipients=[to],
                            hostname=settings.smtp_host,
                            port=settings.smtp_port,
                            username=settings.smtp_username,
                            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                            # None: upgraded where the relay offers STARTTLS, before any password is sent
                            start_tls=False if settings.smtp_use_tls else settings.smtp_starttls,
                            use_tls=settings.smtp_use_tls,
                            timeout=settings.watch_webhook_timeout_s,
                        )
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        await self._record(ids, "email", number, False, error=f"{type(exc).__name__}: {exc}"[:300])
                        raise
                    await self._record(ids, "email", number, True)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("watch.email_failed", to=to, attempts=number, error=str(exc)[:300])
            return False
        return True

    # ---- the daily digest ------------------------------------------------------------------------------------

    async def send_digests(self) -> int:
        """One webhook and one e-mail per watch for the alerts held for its digest. Returns how many were sent."""
        sent = 0
        for watch_id, alerts in (await repository.digest_due(self.db)).items():
            watch = await repository.watch_doc(self.db, watch_id) or {"channels": {}}
            channels = watch.get("channels") or {}
            for channel in ("webhook", "email"):
                held = [a for a in alerts if a["deliveries"].get(channel) == "digest"]
                if not held:
                    continue
                ids = [a["_id"] for a in held]
                if not channels.get(channel):
                    ok = False
                elif channel == "webhook":
                    digest_id = f"wdg_{hashlib.sha256('|'.join(ids).encode()).hexdigest()[:20]}"
                    data = {"watch_id": watch_id, "alerts": [alert_body(a) for a in held]}
                    outcome = await self.webhook(
                        channels["webhook"], watch["webhook_secret"], digest_id, "watch.digest", data, ids
                    )
                    if outcome.gone:
                        await self._switch_off(watch_id, channels["webhook"])
                    ok = outcome.sent
                else:
                    ok = await self.email(channels["email"], watch_id, held)
                await repository.digest_sent(self.db, ids, channel, "sent" if ok else "failed")
                sent += ok
        return sent


async def _off() -> ChannelResult:
    return ChannelResult("off")
