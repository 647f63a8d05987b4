"""WSGI entry point of the test project (``gunicorn testproject.wsgi`` from ``testproject/``)."""

import os
import sys
from pathlib import Path

# The repository root, so that `django_durable` imports without being installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
