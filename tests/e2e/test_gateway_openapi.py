"""The gateway's HTTP contract across the process boundary, checked with generated requests.

1. schemathesis drives every operation of the live gateway's own OpenAPI document (its
   examples, coverage and fuzzing phases, valid and invalid data, with an ops key) and fails
   on a 5xx, a response that does not match its documented schema, an undocumented status
   code or an undocumented content type.
2. hypothesis posts random JSON bodies (the real field names with values of every JSON type,
   extra keys, nesting) to capture, batch, amend and cancel: never a 5xx; every 4xx is
   problem+json with a `detail`; every 422 has `errors`, a list of {field, reason}.
3. A table of real good and bad identifiers: each bad one is a 422 naming its field.

Last, the requests the generators found to break the gateway, pinned so they stay fixed.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import engine
from schemathesis.engine import events

from bo_tools.stack import Stack
from tests.conftest import a_trade, auth

pytestmark = pytest.mark.e2e

PROBLEM_JSON = "application/problem+json"
# A valid LEI for which the demo data has no standing settlement instructions: settlement
# waits for one, so a trade with it stays amendable and cancellable for the whole module.
LEI_WITHOUT_SSI = "529900T8BM49AURSDO55"


# -- 1. schemathesis against the live OpenAPI document -----------------------------------

# Examples per operation in the fuzzing phase; the examples and coverage phases add their
# own (the documented examples; boundary and invalid values of each field and parameter).
FUZZ_EXAMPLES = 25
CONFORMANCE_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
# What the run must at least have sent to each operation for its pass to mean something
# (an operation without any input has little to vary).
MIN_REQUESTS = 15
MIN_REQUESTS_WITHOUT_INPUT = 5
# /metrics is Prometheus text (text/plain) that the document declares as application/json:
# it cannot conform until the route documents its real media type (see the report).
NOT_CHECKED = ("/metrics",)


def schemathesis_config(base_url: str, key: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "base-url": base_url,
            # uvicorn closes the connection after an unhandled error: a connection per
            # request keeps one 5xx from turning the next request into a network error.
            "headers": {**auth(key), "Connection": "close"},
            "request-timeout": 10,
            # Report every failure of an operation, not only the first.
            "continue-on-failure": True,
            "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CONFORMANCE_CHECKS},
            },
            # The routes document no links; the hypothesis tests below chain real trades.
            "phases": {"stateful": {"enabled": False}},
        }
    )


def test_every_operation_answers_as_its_openapi_document_says(
    stack: Stack, keys: dict[str, str]
) -> None:
    """The equivalent of `st run <gateway>/openapi.json` with the checks above, as a test."""
    base_url = stack.url("gateway")
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", config=schemathesis_config(base_url, keys["ops"])
    ).exclude(path=list(NOT_CHECKED))
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    assert len(operations) >= 9, sorted(operations)

    sent: Counter[str] = Counter()
    # Each distinct failure (operation, check, what went wrong) once, with a request showing it:
    # a failing example is recorded again at every step of its shrinking.
    failures: dict[tuple[str, str, str], str] = {}
    errors: list[str] = []
    finished: events.EngineFinished | None = None
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.label is not None:
            sent[event.label] += len(event.recorder.interactions)
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        what = f"{failure.title}\n{failure.message}"
                        failures.setdefault(
                            (event.label, node.name, what), node.failure_info.code_sample
                        )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()[:3000]}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            finished = event

    assert finished is not None and finished.stop_reason is engine.StopReason.COMPLETED, finished
    assert not errors, "\n\n".join(errors)
    assert not failures, "\n\n".join(
        f"{label} [{check}] {what}\n{request}" for (label, check, what), request in failures.items()
    )
    for label, operation in operations.items():
        has_input = any(True for _ in operation.iter_parameters()) or bool(operation.body)
        least = MIN_REQUESTS if has_input else MIN_REQUESTS_WITHOUT_INPUT
        assert sent[label] >= least, (label, dict(sent))


# -- 2. random JSON bodies never break the gateway ---------------------------------------

TRADE_FIELDS = [*a_trade(), "cusip"]
TERM_FIELDS = [f for f in TRADE_FIELDS if f not in ("client_trade_id", "account")]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and the infinities too, sent as the tokens Python's json writes
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
amounts = (
    st.decimals(allow_nan=True, allow_infinity=True).map(str)
    | st.decimals(min_value=0, max_value=10**12, places=8).map(str)
    | st.floats(min_value=0, max_value=1e12)
    | st.integers(min_value=-1, max_value=10**20)
)
# Plausible values for each field: valid ones, near misses and edge cases, so that bodies
# also get past the field rules into the rules across fields, the database and the outbox.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "client_trade_id": st.from_regex(r"\AFZ-[A-Za-z0-9._:\-/]{1,20}\Z") | st.text(max_size=70),
    "account": st.sampled_from(["ACC-001", "ACC-002", "ACC-010", "ACC-999", "acc-001", ""]),
    "side": st.sampled_from(["BUY", "SELL", "buy", "HOLD"]),
    "isin": st.sampled_from(
        ["US0378331005", "GB0002634946", "DE0007164600", "CA0679011084", "US0378331006", "US"]
    ),
    "cusip": st.sampled_from(["037833100", "037833101", "067901108", None]),
    "quantity": amounts,
    "price": amounts,
    "currency": st.sampled_from(["USD", "EUR", "GBP", "usd", "XAU", "XXX", "ZZZ", "US"]),
    "trade_date": st.dates().map(date.isoformat) | st.just(datetime.now(UTC).date().isoformat()),
    "trade_time": st.datetimes(timezones=offsets).map(datetime.isoformat)
    | st.datetimes().map(datetime.isoformat),  # no offset
    "venue": st.sampled_from(["XNYS", "XLON", "XPAR", "XOFF", "xnys", "ZZZZ", "XNY"]),
    # Valid LEIs without SSIs only, so that no amendment lets settlement instruct the trade.
    "counterparty_lei": st.sampled_from(
        [LEI_WITHOUT_SSI, "213800WSGIIZCXF1P572", "784F5XWPLTWKTBV3E585", "5493"]
    ),
    "settlement_type": st.sampled_from(["DVP", "FOP", "RVP", "dvp"]),
    "reason": st.sampled_from(["Allocation fixed", "ok", "Booked twice"])
    | st.text(min_size=3, max_size=500)
    | st.text(max_size=600),
}
# Another moment for the trade: trade_time with an offset, trade_date its date there; any
# day up to today, and the first day of the calendar, where offsets run out of range.
moments = st.one_of(
    st.datetimes(max_value=datetime.now(), timezones=offsets),
    st.datetimes(max_value=datetime(1, 1, 1, 23, 59), timezones=offsets),
).map(lambda moment: {"trade_time": moment.isoformat(), "trade_date": moment.date().isoformat()})
extra_keys = st.dictionaries(
    st.text(max_size=12).filter(lambda key: key not in PLAUSIBLE), json_values, max_size=3
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Values of one of the strategies, each chosen as often as its weight says."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def value_of(field: str) -> st.SearchStrategy[Any]:
    return weighted((3, PLAUSIBLE[field]), (1, json_values))


@st.composite
def trade_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid trade at another moment (half the time) with some fields changed to plausible
    or random values; half the time, some fields removed and unknown ones added."""
    body: dict[str, Any] = a_trade(
        client_trade_id=draw(st.from_regex(r"\AFZ-[A-Za-z0-9]{12}\Z")),
        counterparty_lei=LEI_WITHOUT_SSI,
    )
    if draw(st.booleans()):
        body.update(draw(moments))
    for field in draw(st.lists(st.sampled_from(TRADE_FIELDS), max_size=4, unique=True)):
        body[field] = draw(value_of(field))
    if draw(st.booleans()):
        for field in draw(st.lists(st.sampled_from(TRADE_FIELDS), max_size=2, unique=True)):
            body.pop(field, None)
        body.update(draw(extra_keys))
    return body


def random_objects(fields: list[str]) -> st.SearchStrategy[Any]:
    """Objects with some of the real field names, random values and random extra keys."""
    return st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields)).flatmap(
        lambda known: extra_keys.map(lambda extra: {**known, **extra})
    )


@st.composite
def amendments(draw: st.DrawFn) -> dict[str, Any]:
    """A reason (mostly) and new values for some terms (a coherent moment, half the time);
    half the time, unknown fields too."""
    body: dict[str, Any] = {"reason": draw(value_of("reason"))}
    if draw(st.booleans()):
        body.update(draw(moments))
    for field in draw(st.lists(st.sampled_from(TERM_FIELDS), max_size=4, unique=True)):
        body[field] = draw(value_of(field))
    if draw(st.integers(0, 4)) == 0:
        body.pop("reason")
    if draw(st.booleans()):
        body.update(draw(extra_keys))
    return body


@st.composite
def cancellations(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": draw(value_of("reason"))}
    if draw(st.booleans()):
        body.update(draw(extra_keys))
    return body


capture_requests = weighted(
    (3, trade_bodies()), (1, random_objects(TRADE_FIELDS)), (1, json_values)
)
batch_requests = weighted(
    (
        3,
        st.fixed_dictionaries(
            {
                "trades": st.lists(
                    weighted((3, trade_bodies()), (1, random_objects(TRADE_FIELDS))), max_size=4
                )
            }
        ),
    ),
    (1, st.fixed_dictionaries({"trades": json_values})),
    (1, random_objects(["trades"])),
    (1, json_values),
)
amend_requests = weighted((3, amendments()), (1, random_objects(["reason", *TRADE_FIELDS])))
cancel_requests = weighted((3, cancellations()), (1, random_objects(["reason"])), (1, json_values))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        # Every example is a request to the gateway: no extra runs to explain a failure.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("gateway"), timeout=10) as client:
        yield client


def post_json(http: httpx.Client, key: str, path: str, body: Any) -> httpx.Response:
    """POST `body` as Python's json writes it (NaN and Infinity included, as many clients
    send them), on a connection of its own (see `schemathesis_config`)."""
    return http.post(
        path,
        content=json.dumps(body),
        headers={**auth(key), "Content-Type": "application/json", "Connection": "close"},
    )


def describe(response: httpx.Response) -> str:
    request = response.request
    sent = request.content.decode("utf-8", "replace")[:2000]
    return (
        f"{request.method} {request.url} {sent}\n-> {response.status_code} {response.text[:2000]}"
    )


def assert_answer(response: httpx.Response, statuses: set[int]) -> None:
    """Never a 5xx; a 4xx is problem+json with a detail; a 422 lists {field, reason}."""
    assert response.status_code in statuses, describe(response)
    if response.status_code < 400:
        assert response.headers["content-type"].startswith("application/json"), describe(response)
        return
    assert response.headers["content-type"].startswith(PROBLEM_JSON), describe(response)
    problem = response.json()
    assert problem["status"] == response.status_code, describe(response)
    assert isinstance(problem.get("detail"), str) and problem["detail"], describe(response)
    if response.status_code == 422:
        errors = problem.get("errors")
        assert isinstance(errors, list) and errors, describe(response)
        for error in errors:
            assert set(error) == {"field", "reason"}, describe(response)
            assert isinstance(error["field"], str) and error["field"], describe(response)
            assert isinstance(error["reason"], str) and error["reason"], describe(response)


@pytest.fixture(scope="module")
def open_trade(http: httpx.Client, keys: dict[str, str]) -> str:
    """A real trade, amended once, that settlement cannot instruct (no SSI for its
    counterparty): the target of the random amendments and cancellations."""
    captured = post_json(
        http, keys["trader"], "/v1/trades", a_trade(counterparty_lei=LEI_WITHOUT_SSI)
    )
    assert captured.status_code == 201, describe(captured)
    trade_id: str = captured.json()["trade_id"]
    amended = post_json(
        http,
        keys["trader"],
        f"/v1/trades/{trade_id}/amend",
        {"reason": "Allocation fixed", "price": "190.5"},
    )
    assert amended.status_code == 200, describe(amended)
    return trade_id


@fuzz(80)
@given(body=capture_requests)
def test_random_trade_bodies_never_break_capture(
    http: httpx.Client, keys: dict[str, str], body: Any
) -> None:
    response = post_json(http, keys["trader"], "/v1/trades", body)
    assert_answer(response, {200, 201, 403, 409, 422})


@fuzz(40)
@given(body=batch_requests)
def test_random_batches_never_break_batch_capture(
    http: httpx.Client, keys: dict[str, str], body: Any
) -> None:
    response = post_json(http, keys["trader"], "/v1/trades/batch", body)
    assert_answer(response, {200, 422})
    if response.status_code == 200:
        result = response.json()
        items = result["items"]
        assert [item["index"] for item in items] == list(range(len(body["trades"]))), describe(
            response
        )
        counts = Counter(item["status"] for item in items)
        assert (result["created"], result["existing"], result["rejected"]) == (
            counts["created"],
            counts["existing"],
            counts["rejected"],
        ), describe(response)
        for item in items:
            assert (item["trade_id"] is None) == (item["status"] == "rejected"), describe(response)
            assert bool(item["errors"]) == (item["status"] == "rejected"), describe(response)


@fuzz(40)
@given(body=amend_requests)
def test_random_amendments_never_break_amend(
    http: httpx.Client, keys: dict[str, str], open_trade: str, body: Any
) -> None:
    response = post_json(http, keys["trader"], f"/v1/trades/{open_trade}/amend", body)
    # Not 409: settlement cannot instruct the trade, so it stays amendable.
    assert_answer(response, {200, 422})


@fuzz(40)
@given(body=cancel_requests)
def test_random_cancellations_never_break_cancel(
    http: httpx.Client, keys: dict[str, str], open_trade: str, body: Any
) -> None:
    response = post_json(http, keys["trader"], f"/v1/trades/{open_trade}/cancel", body)
    # Not 409: a trade settlement has not instructed can be cancelled, and cancelled again.
    assert_answer(response, {200, 422})


# -- 3. the main rules, one identifier at a time -----------------------------------------


def _days_from_today(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


BAD_TRADES = [
    pytest.param({"isin": "US0378331006"}, "isin", id="isin-check-digit"),
    pytest.param({"isin": "GB0002634947"}, "isin", id="isin-check-digit-gb"),
    pytest.param(
        {"counterparty_lei": "784F5XWPLTWKTBV3E585"}, "counterparty_lei", id="lei-check-digits"
    ),
    pytest.param(
        {"counterparty_lei": "529900T8BM49AURSDO56"}, "counterparty_lei", id="lei-check-digits-2"
    ),
    pytest.param({"venue": "ZZZZ"}, "venue", id="mic-unknown"),
    pytest.param({"currency": "XAU"}, "currency", id="currency-gold"),
    pytest.param({"currency": "EURO"}, "currency", id="currency-not-iso-4217"),
    pytest.param({"quantity": "1.123456789"}, "quantity", id="quantity-9-decimals"),
    pytest.param({"price": "0"}, "price", id="price-zero"),
    pytest.param({"trade_date": _days_from_today(2)}, "trade_date", id="trade-date-in-future"),
    pytest.param({"cusip": "037833101"}, "cusip", id="cusip-check-digit"),
    pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
]
GOOD_TRADES = [
    pytest.param({}, id="sample"),
    pytest.param({"isin": "GB0002634946", "venue": "XLON", "currency": "GBP"}, id="uk-equity-xlon"),
    pytest.param({"isin": "DE0007164600", "venue": "XETR", "currency": "EUR"}, id="de-equity-xetr"),
    pytest.param({"cusip": "037833100"}, id="cusip-in-the-isin"),
    pytest.param({"counterparty_lei": LEI_WITHOUT_SSI}, id="another-lei"),
    pytest.param({"venue": "XOFF"}, id="off-exchange"),
    pytest.param({"quantity": "0.12345678", "price": "0.0000000001"}, id="finest-decimals"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_TRADES)
def test_a_bad_identifier_is_a_422_naming_its_field(
    http: httpx.Client, keys: dict[str, str], changes: dict[str, str], field: str
) -> None:
    trade = a_trade(**changes)
    single = post_json(http, keys["trader"], "/v1/trades", trade)
    assert single.status_code == 422, describe(single)
    assert_answer(single, {422})
    assert field in [error["field"] for error in single.json()["errors"]], describe(single)

    batch = post_json(http, keys["trader"], "/v1/trades/batch", {"trades": [trade]})
    assert batch.status_code == 200, describe(batch)
    [item] = batch.json()["items"]
    assert item["status"] == "rejected", describe(batch)
    assert field in [error["field"] for error in item["errors"]], describe(batch)


@pytest.mark.parametrize("changes", GOOD_TRADES)
def test_a_good_identifier_is_captured(
    http: httpx.Client, keys: dict[str, str], changes: dict[str, str]
) -> None:
    trade = a_trade(**changes)
    response = post_json(http, keys["trader"], "/v1/trades", trade)
    assert response.status_code == 201, describe(response)
    captured = response.json()
    for name in ("isin", "venue", "currency", "counterparty_lei", "cusip"):
        assert captured[name] == trade.get(name), describe(response)


# -- what the generators found, pinned ------------------------------------------------------


def _cursor(received_at: str, trade_id: str) -> str:
    raw = json.dumps([received_at, trade_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# (method, path, query, body, the answers that would be right)
FOUND = [
    pytest.param("GET", "/v1/trades/%00", {}, None, {404, 422}, id="nul-in-trade-id"),
    pytest.param(
        "POST",
        "/v1/trades/%00/cancel",
        {},
        {"reason": "Booked twice"},
        {404, 422},
        id="nul-in-trade-id-to-cancel",
    ),
    pytest.param(
        "GET", "/v1/trades", {"client_trade_id": "a\x00"}, None, {200, 422}, id="nul-in-filter"
    ),
    pytest.param(
        "GET", "/v1/trades", {"account": "ACC\x00"}, None, {200, 422}, id="nul-in-account"
    ),
    pytest.param(
        "GET",
        "/v1/trades",
        {"cursor": _cursor("2026-01-01T00:00:00+00:00", "\x00")},
        None,
        {422},
        id="nul-in-cursor",
    ),
    pytest.param(
        "GET",
        "/v1/trades",
        {"cursor": _cursor("0001-01-01T00:00:00+14:00", "x")},
        None,
        {422},
        id="cursor-before-year-1-in-utc",
    ),
    pytest.param(
        "POST",
        "/v1/trades",
        {},
        a_trade(trade_date="0001-01-01", trade_time="0001-01-01T00:30:00+01:00"),
        {422},
        id="trade-time-before-year-1-in-utc",
    ),
]


@pytest.mark.parametrize(("method", "path", "params", "body", "statuses"), FOUND)
def test_requests_that_broke_the_gateway_are_answered_without_a_server_error(
    http: httpx.Client,
    keys: dict[str, str],
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
    statuses: set[int],
) -> None:
    response = http.request(
        method,
        path,
        params=params,
        json=body,
        headers={**auth(keys["ops"]), "Connection": "close"},
    )
    assert_answer(response, statuses)


def _amendable_trade(http: httpx.Client, key: str) -> str:
    captured = post_json(http, key, "/v1/trades", a_trade(counterparty_lei=LEI_WITHOUT_SSI))
    assert captured.status_code == 201, describe(captured)
    trade_id: str = captured.json()["trade_id"]
    return trade_id


@pytest.mark.parametrize(
    ("change", "body"),
    [
        pytest.param("amend", {"reason": "Allocation\x00fixed", "quantity": "7"}, id="amend"),
        pytest.param("cancel", {"reason": "Booked\x00twice"}, id="cancel"),
    ],
)
def test_a_reason_with_a_nul_character_is_a_422(
    http: httpx.Client, keys: dict[str, str], change: str, body: dict[str, str]
) -> None:
    trade_id = _amendable_trade(http, keys["trader"])
    response = post_json(http, keys["trader"], f"/v1/trades/{trade_id}/{change}", body)
    assert_answer(response, {422})
    assert "reason" in [error["field"] for error in response.json()["errors"]], describe(response)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"reason": ', id="cut-short"),
        pytest.param('{"reason": "café"}'.encode("latin-1"), id="latin-1-not-utf-8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_body_that_is_not_json_is_a_422_naming_the_body(
    http: httpx.Client, keys: dict[str, str], content: bytes
) -> None:
    for path in ("/v1/trades", "/v1/trades/batch"):
        response = http.post(
            path,
            content=content,
            headers={**auth(keys["trader"]), "Content-Type": "application/json"},
        )
        assert_answer(response, {422})
        assert response.json()["errors"][0]["field"] == "body", describe(response)


def test_an_amended_trade_can_be_cancelled(http: httpx.Client, keys: dict[str, str]) -> None:
    trade_id = _amendable_trade(http, keys["trader"])
    amended = post_json(
        http,
        keys["trader"],
        f"/v1/trades/{trade_id}/amend",
        {"reason": "Allocation fixed", "quantity": "150"},
    )
    assert amended.status_code == 200, describe(amended)
    cancelled = post_json(
        http, keys["trader"], f"/v1/trades/{trade_id}/cancel", {"reason": "Booked twice"}
    )
    assert cancelled.status_code == 200, describe(cancelled)
    assert (cancelled.json()["state"], cancelled.json()["version"]) == ("cancelled", 2)


@pytest.mark.parametrize(
    ("quantity", "price"),
    [("100", "190"), ("0.00000001", "0.0000000001"), ("1234.5", "189.25")],
)
def test_amounts_come_back_as_plain_decimals(
    http: httpx.Client, keys: dict[str, str], quantity: str, price: str
) -> None:
    response = post_json(
        http, keys["trader"], "/v1/trades", a_trade(quantity=quantity, price=price)
    )
    assert response.status_code == 201, describe(response)
    trade = response.json()
    for name, sent in (("quantity", quantity), ("price", price)):
        # The same number, written as the README and the OpenAPI examples write it: no exponent.
        assert Decimal(trade[name]) == Decimal(sent), describe(response)
        assert "E" not in trade[name].upper(), describe(response)
