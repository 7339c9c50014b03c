"""The host allocator's thresholds: set once per process on Linux, and left alone on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from headstart.engine import allocator, pick_device


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_pick_device_tunes_the_allocator_once():
    pick_device("cpu")
    assert allocator._state == {"done": True, "tuned": True}
    assert allocator.tune_host_allocator() is True


def test_headstart_malloc_default_leaves_glibc_alone():
    code = "from headstart.engine.allocator import tune_host_allocator as t; print(t(), t())"
    env = {**os.environ, "HEADSTART_MALLOC": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
