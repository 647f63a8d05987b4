"""Signed wake-up tokens: a webhook may wake one sleeping execution without logging in.

A token is ``django.core.signing.TimestampSigner`` output (keyed by ``SECRET_KEY``, honouring
``SECRET_KEY_FALLBACKS``, with a salt used for nothing else) over the execution id, so it names
the one execution it may wake and expires ``DURABLE["WAKEUP_TOKEN_MAX_AGE"]`` seconds after it
was made. It is no secret which execution a token is for; forging or altering one is what the
signature prevents.
"""

from __future__ import annotations

import datetime
from typing import Any, Protocol
from urllib.parse import quote

from django.core import signing
from django.urls import reverse
from django.utils.crypto import constant_time_compare

from .conf import durable_settings

__all__ = [
    "WAKEUP_TOKEN_SALT",
    "check_wakeup_token",
    "make_wakeup_token",
    "read_wakeup_token",
    "wakeup_token_expires_at",
    "wakeup_url",
]

#: The signing salt of wake-up tokens: a signature made for any other purpose never passes.
WAKEUP_TOKEN_SALT = "django_durable.tokens.wakeup"


class SleepingExecution(Protocol):
    """What :func:`wakeup_url` needs: a ``TaskExecution`` row or an ``ExecutionSnapshot``."""

    @property
    def task_id(self) -> str: ...

    @property
    def execution_id(self) -> str: ...

    @property
    def sleeping_task_unique_id(self) -> str | None: ...


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=WAKEUP_TOKEN_SALT)


def make_wakeup_token(execution_id: str) -> str:
    """A token that lets its bearer wake the sleeping execution ``execution_id`` (only that one).

    It is valid for ``DURABLE["WAKEUP_TOKEN_MAX_AGE"]`` seconds (7 days by default).
    """
    if not isinstance(execution_id, str) or not execution_id:
        raise ValueError("make_wakeup_token() needs a non-empty execution id")
    return _signer().sign(execution_id)


def read_wakeup_token(token: Any) -> str | None:
    """The execution id that ``token`` was made for, or ``None`` if it is forged or expired."""
    if not isinstance(token, str) or not token:
        return None
    try:
        max_age = datetime.timedelta(seconds=durable_settings.WAKEUP_TOKEN_MAX_AGE)
        return _signer().unsign(token, max_age=max_age)
    except signing.BadSignature:  # SignatureExpired is a BadSignature too
        return None
    except ValueError:  # signed with this salt but without a timestamp
        return None


def check_wakeup_token(token: Any, execution_id: str) -> bool:
    """Whether ``token`` is a valid, unexpired wake-up token for ``execution_id``."""
    found = read_wakeup_token(token)
    return found is not None and constant_time_compare(found, execution_id)


def wakeup_token_expires_at(token: str) -> datetime.datetime | None:
    """When ``token`` stops being accepted (``None`` if it is forged or already expired)."""
    if read_wakeup_token(token) is None:
        return None
    # A valid token is "<execution id>:<base62 timestamp>:<signature>".
    _, timestamp, _ = token.rsplit(_signer().sep, 2)
    issued = datetime.datetime.fromtimestamp(signing.b62_decode(timestamp), tz=datetime.UTC)
    return issued + datetime.timedelta(seconds=durable_settings.WAKEUP_TOKEN_MAX_AGE)


def wakeup_url(execution: SleepingExecution, *, token: str | None = None) -> str:
    """The path of the wake-up route for a sleeping execution, with a fresh token in ``?token=``.

    Needs the API's URLs included under the ``django_durable`` namespace
    (``path("durable/", include("django_durable.api.urls"))``); raises ``NoReverseMatch``
    otherwise, and ``ValueError`` for an execution that is not a sleeping one. Make it absolute
    with ``request.build_absolute_uri(wakeup_url(execution))``.
    """
    unique_id = execution.sleeping_task_unique_id
    if not unique_id:
        raise ValueError(
            f"Execution {execution.execution_id} is not a sleeping task execution: it has no "
            "unique id to be woken by"
        )
    path = reverse(
        "django_durable:sleeping-wakeup",
        kwargs={"task_id": execution.task_id, "unique_id": unique_id},
    )
    token = token or make_wakeup_token(execution.execution_id)
    return f"{path}?token={quote(token, safe='')}"
