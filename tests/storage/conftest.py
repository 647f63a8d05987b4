"""Fixtures of the storage tests; the conformance mixin's asserts get pytest's rewriting."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.storage.conformance")
