"""Flower integration: run this library's secure aggregation inside Flower apps."""
