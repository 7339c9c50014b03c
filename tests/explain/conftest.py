"""Fixtures for the explain tests (helpers in explain_helpers.py)."""

from __future__ import annotations

import pytest
from explain_helpers import tiny_backbone


@pytest.fixture
def tiny():
    return tiny_backbone()
