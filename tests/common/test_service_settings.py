"""A service's settings class names the service and its port once, as class keywords (hubpulse_common.settings)."""

from __future__ import annotations

import pytest

from hubpulse_common.settings import ConsumerSettings, ServiceSettings, load_settings


class _Web(ServiceSettings, service="web", port=8100):
    pass


class _Reader(ConsumerSettings, service="reader", port=8101):
    batch_size: int = 10


def test_the_class_keywords_are_the_defaults_of_the_fields_every_service_has() -> None:
    web, reader = load_settings(_Web), load_settings(_Reader)
    assert (web.service_name, web.port) == ("web", 8100)
    assert (reader.service_name, reader.port, reader.consumer_group) == ("reader", 8101, "reader")
    assert reader.batch_size == 10, "a field the class declares itself"
    assert (ServiceSettings().service_name, ServiceSettings().port) == ("hubpulse", 8080), "the base keeps its own"
    assert _Reader.model_fields["consumer_group"].default == "reader", "what docs/configuration.md shows"


def test_the_environment_still_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBPULSE_PORT", "9100")
    monkeypatch.setenv("HUBPULSE_CONSUMER_GROUP", "readers-b")
    reader = load_settings(_Reader)
    assert (reader.port, reader.consumer_group, reader.service_name) == (9100, "readers-b", "reader")
