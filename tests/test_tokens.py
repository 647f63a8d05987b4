"""Signed wake-up tokens: they name one execution, expire, and cannot be forged."""

from __future__ import annotations

import datetime
import time
from types import SimpleNamespace

import pytest
from django.core import signing
from django.test import override_settings
from django.utils import timezone

from django_durable.tokens import (
    WAKEUP_TOKEN_SALT,
    check_wakeup_token,
    make_wakeup_token,
    read_wakeup_token,
    wakeup_token_expires_at,
    wakeup_url,
)


def test_a_token_checks_for_its_execution_only() -> None:
    token = make_wakeup_token("te_one")
    assert check_wakeup_token(token, "te_one")
    assert not check_wakeup_token(token, "te_two")
    assert not check_wakeup_token(token, "te_on")
    assert read_wakeup_token(token) == "te_one"


def test_tokens_are_url_safe() -> None:
    token = make_wakeup_token("te_ABCdef123")
    assert all(character.isalnum() or character in "-_:" for character in token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "te_one",
        "te_one:abc:def",
        None,
        123,
        signing.TimestampSigner(salt="something else").sign("te_one"),
        signing.TimestampSigner(key="other key", salt=WAKEUP_TOKEN_SALT).sign("te_one"),
        signing.Signer(salt=WAKEUP_TOKEN_SALT).sign("te_one"),
    ],
    ids=["empty", "bare", "garbage", "none", "int", "other-salt", "other-key", "no-timestamp"],
)
def test_forged_tokens_are_refused(token: object) -> None:
    assert read_wakeup_token(token) is None
    assert not check_wakeup_token(token, "te_one")


def test_a_tampered_token_is_refused() -> None:
    token = make_wakeup_token("te_one")
    value, timestamp, signature = token.split(":")
    assert not check_wakeup_token(f"te_two:{timestamp}:{signature}", "te_two")
    assert not check_wakeup_token(f"{value}:{timestamp}:{signature[::-1]}", "te_one")


def test_tokens_made_with_a_rotated_secret_key_still_pass(settings: object) -> None:
    token = make_wakeup_token("te_one")
    with override_settings(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["django-durable-tests"]):
        assert check_wakeup_token(token, "te_one")
    with override_settings(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=[]):
        assert not check_wakeup_token(token, "te_one")


@override_settings(DURABLE={"WAKEUP_TOKEN_MAX_AGE": 60})
def test_tokens_expire_after_wakeup_token_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now - 59)
    fresh = make_wakeup_token("te_one")
    monkeypatch.setattr(signing.time, "time", lambda: now - 61)
    stale = make_wakeup_token("te_one")
    monkeypatch.undo()
    assert check_wakeup_token(fresh, "te_one")
    assert not check_wakeup_token(stale, "te_one")
    assert wakeup_token_expires_at(stale) is None


@override_settings(DURABLE={"WAKEUP_TOKEN_MAX_AGE": 3600})
def test_expires_at_is_issue_time_plus_max_age() -> None:
    before = timezone.now().replace(microsecond=0)
    expires_at = wakeup_token_expires_at(make_wakeup_token("te_one"))
    assert expires_at is not None
    assert before + datetime.timedelta(seconds=3599) <= expires_at
    assert expires_at <= timezone.now() + datetime.timedelta(seconds=3600)


def test_make_wakeup_token_needs_an_id() -> None:
    with pytest.raises(ValueError):
        make_wakeup_token("")


def test_wakeup_url_points_at_the_wakeup_route_with_a_token() -> None:
    execution = SimpleNamespace(
        task_id="shop.wait_for_payment",
        execution_id="te_abc",
        sleeping_task_unique_id="order/42 ü",
    )
    path = wakeup_url(execution)
    assert path.startswith("/durable/sleeping/shop.wait_for_payment/order/42%20%C3%BC/wakeup/")
    token = path.split("?token=", 1)[1]
    assert check_wakeup_token(token.replace("%3A", ":"), "te_abc")
    assert wakeup_url(execution, token="t").endswith("?token=t")


def test_wakeup_url_of_an_execution_that_does_not_sleep_is_an_error() -> None:
    execution = SimpleNamespace(task_id="t", execution_id="te_abc", sleeping_task_unique_id=None)
    with pytest.raises(ValueError, match="not a sleeping task execution"):
        wakeup_url(execution)
