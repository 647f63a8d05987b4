"""ASGI entry point of the test project (``uvicorn testproject.asgi:application``)."""

import os
import sys
from pathlib import Path

# The repository root, so that `django_durable` imports without being installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()
