"""Event contracts: one module per producing service, frozen pydantic models, versioned.

A change is additive (a new optional field) or gets a new version number; consumers read
with `model_validate` and ignore nothing silently (extra fields are allowed so that an
additive change by a producer does not break an older consumer).
"""
