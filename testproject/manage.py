#!/usr/bin/env python
"""Django's command-line utility for the django-durable test project."""

import os
import sys
from pathlib import Path


def main() -> None:
    # The repository root, so that `django_durable` imports without being installed.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
