"""Optional integrations of django-durable with other libraries (e.g. :mod:`.celery`)."""
