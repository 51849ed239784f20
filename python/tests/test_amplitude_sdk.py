"""Amplitude's own Python SDK (`amplitude-analytics`, pinned in requirements-test.txt) reads
every event ampsim emits as an HTTP V2 event and writes it back unchanged (issue 18, item 2).

A generated week (`ampsim events`, the same JSON lines as `ampsim export --format jsonl` and
the events `ampsim upload` sends) is fed, event by event, to `amplitude.BaseEvent(**event)`;
`get_event_body()`, the dict the SDK puts in its request, must equal the event, with the same
JSON types (compared as sorted JSON text, so 49.0 is not 49 and 2 is not "2" or True).

What the SDK does with an event (amplitude-analytics 1.3.0, `amplitude/event.py`):
- The constructor takes keyword arguments only for the fields it knows; any other key (e.g.
  the Export-layout `device_family` / `device_type`) raises TypeError.
- Two wire names are camelCase, while the constructor's names are snake_case: HTTP V2's
  `productId` and `revenueType` are the keyword arguments `product_id` and `revenue_type`, and
  `get_event_body()` writes them back as `productId` / `revenueType`. Those two keys are passed
  under the SDK's own names, taken from the SDK's table `amplitude.event.EVENT_KEY_MAPPING`
  (attribute -> wire name); every other key is passed as it is, and none is dropped.
- A value of the wrong Python type is not converted: it is left out of the event, with an
  error on the `amplitude` logger ("Event property price expected <class 'float'> ..."). So
  `price`, `revenue`, `location_lat`/`lng` must be JSON numbers with a fraction or exponent
  (Python float), `time`, `session_id`, `event_id`, `quantity` integers, the rest strings or
  objects. A property value must be a bool, number, string, list or object, or the whole
  property object is left out.
- `get_event_body()` leaves out None values inside property objects and cuts strings to 1,024
  characters, in place: the SDK is given a deep copy, so it cannot edit the original it is
  compared with.

Beyond the round trip, the week must carry the target shape of HTTP V2 exactness (item 1):
revenue events with an ISO 4217 `currency`, typed property values (no number or boolean sent
as a string), and device fields the SDK knows (`device_manufacturer`, `device_model`).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import re
from collections import Counter, defaultdict

import amplitude
from amplitude.event import EVENT_KEY_MAPPING

# Seed 3 at scale 0.02 from 2025-01-06: its third week (2025-01-20..26) has about 52,000 events,
# 9 of them purchases with revenue (the first two weeks have few: trials take two weeks).
SEED, SCALE, START, DAYS = "3", "0.02", "2025-01-06", "21"
WEEK = ("2025-01-20", "2025-01-26")

# The SDK's keyword arguments, and the wire name each one is written back as.
KWARGS = set(inspect.signature(amplitude.BaseEvent.__init__).parameters) - {"self", "callback"}
WIRE_TO_KWARG = {wire: attr for attr, (wire, _type) in EVENT_KEY_MAPPING.items()}
REVENUE_FIELDS = ("price", "quantity", "revenue", "productId", "revenueType", "currency")
# A string that reads as a JSON number or boolean: a value that lost its type.
UNTYPED = re.compile(r"^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false)$")


class _Errors(logging.Handler):
    """Collects the `amplitude` logger's errors (a value the SDK left out, and why)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _text(v) -> str:
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def sdk_round_trip(events: list[dict]) -> dict[str, list[str]]:
    """Builds `amplitude.BaseEvent` from each event and compares `get_event_body()` with it.

    Returns problems by kind, each with a count and the first example: keys the SDK does not
    take, values it leaves out or changes (by field), and its logged errors. Empty: every
    event went through unchanged.
    """
    unknown: Counter = Counter()
    unknown_example: dict[str, str] = {}
    changed: Counter = Counter()
    changed_example: dict[str, str] = {}
    logged: Counter = Counter()
    errors = _Errors()
    log = logging.getLogger(amplitude.constants.LOGGER_NAME)
    log.addHandler(errors)
    try:
        for original in events:
            kwargs = {WIRE_TO_KWARG.get(k, k): v for k, v in copy.deepcopy(original).items()}
            bad = sorted(set(kwargs) - KWARGS)
            if bad:
                for k in bad:
                    unknown[k] += 1
                    unknown_example.setdefault(k, f"{k}={_text(original.get(k, kwargs[k]))}")
                continue
            errors.messages.clear()
            body = amplitude.BaseEvent(**kwargs).get_event_body()
            for m in errors.messages:
                logged[m] += 1
            if _text(body) == _text(original):
                continue
            for k in sorted(set(body) | set(original)):
                if _text(body.get(k)) != _text(original.get(k)):
                    changed[k] += 1
                    changed_example.setdefault(
                        k,
                        f"ampsim {_text(original.get(k, '<absent>'))} -> "
                        f"SDK {_text(body.get(k, '<absent>'))}",
                    )
    finally:
        log.removeHandler(errors)
    problems: dict[str, list[str]] = {}
    if unknown:
        problems["keys BaseEvent does not take (TypeError)"] = [
            f"{k}: {n} events, e.g. {unknown_example[k]}" for k, n in unknown.most_common()
        ]
    if changed:
        problems["fields get_event_body() left out or changed"] = [
            f"{k}: {n} events, e.g. {changed_example[k]}" for k, n in changed.most_common()
        ]
    if logged:
        problems["errors the SDK logged"] = [f"{n} x {m}" for m, n in logged.most_common()]
    return problems


def target_shape(events: list[dict]) -> dict[str, list[str]]:
    """What HTTP V2 exactness requires beyond the SDK's round trip (issue 18, item 1):
    revenue events with a currency, typed property values, the SDK's device fields."""
    problems: dict[str, list[str]] = defaultdict(list)
    revenue = [e for e in events if any(f in e for f in REVENUE_FIELDS)]
    if not revenue:
        problems["coverage"].append("no revenue event in the week: pick another window")
    for f in REVENUE_FIELDS:
        missing = [e for e in revenue if f not in e]
        if missing:
            problems["revenue events without a revenue field"].append(
                f"{f}: {len(missing)} of {len(revenue)}, e.g. {missing[0]['insert_id']}"
            )
    bad_currency = [
        e for e in revenue if "currency" in e and not re.fullmatch(r"[A-Z]{3}", str(e["currency"]))
    ]
    if bad_currency:
        problems["currency is not a 3-letter ISO 4217 code"].append(
            f"{len(bad_currency)} events, e.g. {_text(bad_currency[0].get('currency'))}"
        )
    untyped: Counter = Counter()
    untyped_example: dict[str, str] = {}
    for e in events:
        for props in ("event_properties", "user_properties"):
            for k, v in (e.get(props) or {}).items():
                if isinstance(v, str) and UNTYPED.match(v):
                    untyped[f"{props}.{k}"] += 1
                    untyped_example.setdefault(f"{props}.{k}", _text(v))
    for k, n in untyped.most_common():
        problems["numbers or booleans sent as strings"].append(
            f"{k}: {n} events, e.g. {untyped_example[k]}"
        )
    for f in ("device_model", "device_manufacturer"):
        if not any(f in e for e in events):
            problems["coverage"].append(f"no event has {f}")
    return dict(problems)


def _report(problems: dict[str, list[str]]) -> str:
    return "\n".join(
        f"{kind}:\n" + "\n".join(f"  {line}" for line in lines) for kind, lines in problems.items()
    )


def test_every_event_of_a_week_goes_through_the_python_sdk_unchanged(server):
    server.cli("create", "--id", "sdk", "--seed", SEED, "--start", START, "--scale", SCALE)
    server.cli("generate", "--simulation", "sdk", "--days", DAYS)
    out = server.cli("events", "--simulation", "sdk", "--from", WEEK[0], "--to", WEEK[1]).stdout
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) > 20_000, len(events)
    assert len({e["insert_id"] for e in events}) == len(events)

    problems = sdk_round_trip(events)
    problems.update(target_shape(events))
    assert not problems, (
        f"{len(events)} events of {WEEK[0]}..{WEEK[1]} through amplitude-analytics "
        f"{amplitude.constants.SDK_VERSION}:\n{_report(problems)}"
    )


def test_the_round_trip_can_fail():
    """The comparison sees what the SDK refuses, leaves out or changes."""
    good = {
        "event_type": "purchase", "device_id": "d-12345", "time": 1737582853799,
        "event_properties": {"conversion_day": 12, "product_sku": "AMP-GROWTH-M"},
        "price": 199.0, "quantity": 1, "revenue": 199.0, "productId": "AMP-GROWTH-M",
        "revenueType": "purchase", "currency": "USD", "device_model": "Windows",
        "device_manufacturer": "Apple", "insert_id": "i-1",
    }
    assert sdk_round_trip([good]) == {}
    assert target_shape([good]) == {}
    # A key the SDK does not take; a float that is an int (left out); a string that is a
    # number; no currency.
    bad = {**good, "device_family": "Mac", "revenue": 199, "event_properties": {"d": "12"}}
    del bad["currency"]
    p = sdk_round_trip([bad])
    assert list(p) == ["keys BaseEvent does not take (TypeError)"], p
    del bad["device_family"]
    p = sdk_round_trip([bad])
    assert "revenue: 1 events" in p["fields get_event_body() left out or changed"][0], p
    assert any("revenue expected" in m for m in p["errors the SDK logged"]), p
    shape = target_shape([bad])
    assert "numbers or booleans sent as strings" in shape, shape
    assert "revenue events without a revenue field" in shape, shape
    # The SDK edits property objects in place (None values left out): the original is kept.
    with_none = {**good, "event_properties": {"a": None}}
    p = sdk_round_trip([with_none])
    assert p["fields get_event_body() left out or changed"][0].startswith("event_properties"), p
