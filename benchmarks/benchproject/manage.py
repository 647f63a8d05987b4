#!/usr/bin/env python
"""``manage.py`` of the benchmark project (``durable_worker``, ``migrate``).

The database comes from ``DATABASE_URL`` (see ``benchproject/settings.py``).
"""

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    # This project's packages, and the repository root so that django_durable imports as is.
    sys.path[:0] = [str(here), str(here.parent.parent)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
