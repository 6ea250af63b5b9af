"""Relay spacing: under load a kicked run waits for the spacing to pass since the last run
ended, so it carries several commits' events; at low load nothing waits."""

from __future__ import annotations

import time

import pytest

from outbox import relay


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(relay.time, "sleep", slept.append)
    return slept


def test_a_run_right_after_another_waits_out_the_spacing(settings, sleeps, monkeypatch) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "RELAY_MIN_SPACING": 0.05}
    monkeypatch.setattr(relay, "_last_run_ended", time.monotonic())
    waited = relay.space_out()
    assert 0.04 < waited <= 0.05
    assert sleeps == [waited]


def test_a_run_long_after_the_last_one_does_not_wait(settings, sleeps, monkeypatch) -> None:
    settings.OUTBOX = {**settings.OUTBOX, "RELAY_MIN_SPACING": 0.05}
    monkeypatch.setattr(relay, "_last_run_ended", time.monotonic() - 1)
    assert relay.space_out() == 0.0
    assert sleeps == []


@pytest.mark.django_db
def test_a_relay_run_records_when_it_ended(monkeypatch) -> None:
    monkeypatch.setattr(relay, "_last_run_ended", 0.0)
    before = time.monotonic()
    relay.relay()
    assert before <= relay._last_run_ended <= time.monotonic()
