"""A runnable Django project that shows django-durable at work (admin, API, example tasks)."""

# The Celery app is loaded with Django so that ``shared_task`` binds to it (Celery's Django
# layout).
from .celery import app as celery_app

__all__ = ("celery_app",)
