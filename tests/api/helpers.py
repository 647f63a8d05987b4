"""Helpers of the API tests."""

from __future__ import annotations

import datetime
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

__all__ = ["ago", "post_json", "url"]


def url(name: str, **kwargs: Any) -> str:
    """The path of ``django_durable:<name>``."""
    return reverse(f"django_durable:{name}", kwargs=kwargs or None)


def post_json(client: Client, path: str, data: Any = None, **extra: Any) -> Any:
    """POST ``data`` as JSON (no body when ``data`` is None)."""
    if data is None:
        return client.post(path, **extra)
    return client.post(path, data, content_type="application/json", **extra)


def ago(seconds: float) -> datetime.datetime:
    """The instant ``seconds`` ago."""
    return timezone.now() - datetime.timedelta(seconds=seconds)
