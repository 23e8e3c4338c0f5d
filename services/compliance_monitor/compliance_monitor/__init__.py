"""Compliance monitor: rules, the restricted list, alerts and holds."""
