"""Secure aggregation protocols as pure state machines, their wire messages and drivers."""

from __future__ import annotations

from protocols.driver import SimulationResult, simulate
from protocols.messages import Stage

__all__ = ["SimulationResult", "Stage", "simulate"]
