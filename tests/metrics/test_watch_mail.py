"""Watch alert e-mail against a real SMTP relay (aiosmtpd) that answers as relays do: a 4xx is retried, a 5xx is
not (RFC 5321 4.2.1), and every message carries the Date and Message-ID that RFC 5322 asks of its sender."""

from __future__ import annotations

import email
import email.utils
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from conftest import Store
from pymongo import AsyncMongoClient

from hubpulse.platform.stores import free_port
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_metrics.watches.delivery import Deliverer, webhook_client

ALERT = {
    "_id": "alert-1",
    "model_id": "acme/tiny-bert",
    "condition": "threshold",
    "probability": 0.62,
    "previous_probability": 0.3,
    "reason": "Trend probability crossed 60 %",
    "url": "https://hubpulse.example/models/acme/tiny-bert",
}


@dataclass
class Relay:
    """Refuses `gone@` for good (550) and greylists `later@` (450); takes the rest."""

    tries: dict[str, int] = field(default_factory=dict)
    delivered: list[email.message.Message] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.tries[address] = self.tries.get(address, 0) + 1
        if address.startswith("gone@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "450 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.delivered.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
async def deliverer(relay: tuple[Relay, int], mongo: Store) -> AsyncIterator[Deliverer]:
    settings = MetricsSettings(
        smtp_host="127.0.0.1", smtp_port=relay[1], watch_email_attempts=3, watch_webhook_backoff_s=0.01
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url)
    async with webhook_client(settings) as http:
        try:
            yield Deliverer(client["watch_mail_test"], None, settings, http)  # type: ignore[arg-type] (no events)
        finally:
            await client.close()


async def test_a_mail_carries_date_and_message_id(deliverer: Deliverer, relay: tuple[Relay, int]) -> None:
    assert await deliverer.email("someone@example.com", "w1", [ALERT])
    (mail,) = relay[0].delivered
    assert email.utils.parsedate_to_datetime(mail["Date"]) is not None
    assert mail["Message-ID"].startswith("<")
    assert mail["Message-ID"].endswith("@hubpulse.local>")


async def test_a_permanent_refusal_is_not_sent_again(deliverer: Deliverer, relay: tuple[Relay, int]) -> None:
    assert not await deliverer.email("gone@example.com", "w1", [ALERT])
    assert relay[0].tries["gone@example.com"] == 1


async def test_a_transient_refusal_is_sent_again(deliverer: Deliverer, relay: tuple[Relay, int]) -> None:
    assert not await deliverer.email("later@example.com", "w1", [ALERT])
    assert relay[0].tries["later@example.com"] == 3  # HUBPULSE_WATCH_EMAIL_ATTEMPTS
