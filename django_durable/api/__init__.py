"""The HTTP API of django-durable (Django REST framework, django-filter, drf-spectacular).

Optional: the core package never imports it. Mount it with
``path("durable/", include("django_durable.api.urls"))``; see ``docs/api.md``.
"""
