"""Flower tests run fully offline: no telemetry, no update checks, no dependency installs.

Flower reads these variables when it is imported, so they are set here, before any test
module imports it.
"""

from __future__ import annotations

import os

from protocols.flower.deployment import OFFLINE_ENVIRONMENT

for _key, _value in OFFLINE_ENVIRONMENT.items():
    os.environ.setdefault(_key, _value)
