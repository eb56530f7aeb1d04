"""Metrics and evaluation of a restored model."""
