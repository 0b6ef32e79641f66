"""Distributed tests dump every thread's stack on a hang (pytest-timeout's marks set the limits)."""

from __future__ import annotations

import faulthandler

faulthandler.enable()
