"""docs/settings.md documents every ``DURABLE`` setting, and no setting that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from django_durable.conf import DEFAULTS

SETTINGS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def documented_keys() -> set[str]:
    """The keys named in the first column of the reference table(s)."""
    keys: set[str] = set()
    for line in SETTINGS_PAGE.read_text().splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            keys.update(re.findall(r"`([A-Z][A-Z_]+)`", first_column))
    return keys


def test_every_setting_is_documented() -> None:
    missing = sorted(set(DEFAULTS) - documented_keys())
    assert not missing, f"docs/settings.md does not document {missing}"


def test_no_documented_setting_is_unknown() -> None:
    unknown = sorted(documented_keys() - set(DEFAULTS))
    assert not unknown, f"docs/settings.md documents settings that do not exist: {unknown}"
