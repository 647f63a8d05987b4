"""The API's renderers: JSON that never fails on a value, and Prometheus text for metrics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer

__all__ = ["PROMETHEUS_CONTENT_TYPE", "DurableJSONRenderer", "PrometheusTextRenderer"]

#: The content type of the Prometheus text exposition format.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DurableJSONRenderer(JSONRenderer):
    """DRF's JSON renderer; text that UTF-8 cannot encode is written as ``\\u`` escapes."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:  # a lone surrogate: ASCII-only JSON escapes it
            return json.dumps(data, cls=self.encoder_class, ensure_ascii=True).encode("ascii")


class PrometheusTextRenderer(BaseRenderer):
    """Renders the metrics text as is, and an error as its ``detail`` line."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        if isinstance(data, Mapping) and "detail" in data:
            data = f"{data['detail']}\n"
        return str(data).encode("utf-8", "backslashreplace")
