"""Which database errors the consume loop retries (the infrastructure) and which it treats
as the message's fault (retried per message, then dead-lettered)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from bo_common.consumer import _is_transient


class _DriverError(Exception):
    def __init__(self, sqlstate: str, message: str = "") -> None:
        super().__init__(message or sqlstate)
        self.sqlstate = sqlstate


def _error(sqlstate: str, message: str = "") -> DBAPIError:
    return DBAPIError("statement", {}, _DriverError(sqlstate, message))


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("08006", "connection failure"),
        ("40P01", "deadlock detected"),
        ("40001", "could not serialize access"),
        ("53300", "too many connections"),
        ("57P01", "terminating connection due to administrator command"),
        ("55000", "the database system is not currently accepting connections"),
    ],
)
def test_errors_of_the_database_or_between_replicas_are_retried(
    sqlstate: str, message: str
) -> None:
    assert _is_transient(_error(sqlstate, message))


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("23505", "duplicate key value violates unique constraint"),
        ("22003", "numeric field overflow"),
        ("P0001", "journal entry does not balance"),
        ("55000", "object not in prerequisite state"),
    ],
)
def test_errors_of_the_message_are_not(sqlstate: str, message: str) -> None:
    assert not _is_transient(_error(sqlstate, message))


def test_a_handler_bug_is_not_transient() -> None:
    assert not _is_transient(KeyError("trade_id"))
