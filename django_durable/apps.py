"""The Django app: autodiscovers every installed app's ``tasks.py`` and wires checks and signals."""

from __future__ import annotations

from django.apps import AppConfig


class DurableConfig(AppConfig):
    name = "django_durable"
    verbose_name = "Durable executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            conf,
            db,
        )

        conf.connect_signals()
        db.connect_signals()
        if conf.durable_settings.LISTEN_NOTIFY:
            from .notify import install_notifier

            install_notifier()
        autodiscover_modules("tasks")
