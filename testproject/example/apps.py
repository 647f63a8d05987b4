"""AppConfig of the example app."""

from django.apps import AppConfig


class ExampleConfig(AppConfig):
    name = "example"
    verbose_name = "django-durable examples"
    default_auto_field = "django.db.models.BigAutoField"
