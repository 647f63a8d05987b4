"""A runnable Django project that shows django-durable at work (admin, API, example tasks)."""
