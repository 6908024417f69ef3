"""Property-based fuzzing of ``POST {prefix}/webhook/<uuid>/`` (hypothesis).

Each example is one HTTP request built from three independent parts: a body (a real event,
or one mutated in a way Stripe never sends), a ``Stripe-Signature`` header (made by
stripe-python with the endpoint's secret, then mutated), and the request's shape (method,
content type, path, how the body is framed). Every example checks the receiving contract:

- never a 5xx; a refusal is a 4xx with a short reason and no traceback;
- an event is stored and a handler runs only if the signature is valid — judged by
  stripe-python's own ``verify_header`` with the right secret, plus the time window;
- a request built valid (good signature, real event, POST) is accepted: 200, stored,
  handled once (``duplicate`` when its id was seen already);
- at most one delivery row per request, and none for a request refused before the
  endpoint is known (no signature, unknown endpoint, too large, wrong method);
- the body limit holds before the body is read whole: with a Content-Length over it
  nothing is read, without one at most limit + 1 bytes are.

The bulk runs on SQLite, a smaller run on PostgreSQL. Runs are derandomized and use no
example database, so CI sees the same examples every time and nothing is written to the
repository. ``FUZZ_EXAMPLES`` scales the SQLite run (default 1000).
"""

from __future__ import annotations

import decimal
import io
import itertools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
import stripe
from flask import Flask
from flask_stripe_hooks import StripeHooks
from flask_stripe_hooks.event_types import all_event_types
from flask_stripe_hooks.testing import build_event, create_endpoint, new_secret
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.helpers import count, make_app, reset_postgres, stored_text

SQLITE_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
POSTGRES_EXAMPLES = max(SQLITE_EXAMPLES // 5, 50)
TOLERANCE = 300
MAX_BODY = 4 * 1024 * 1024  # the default limit
TEN_MB = 10 * 1024 * 1024
EVENT_TYPES = all_event_types()


# -- the target: one app and endpoint per backend, shared by every example ----------------


@dataclass
class Target:
    backend: str
    app: Flask
    client: Any
    endpoint: Any
    secret: str = field(repr=False)
    other_secret: str = field(repr=False)
    handled: list[str] = field(default_factory=list, repr=False)

    @property
    def path(self) -> str:
        return f"/stripe/webhook/{self.endpoint.uuid}/"

    def counts(self) -> tuple[int, int]:
        db = self.app.extensions["sqlalchemy"]
        with self.app.app_context():
            deliveries = db.session.execute(
                sa.text("SELECT count(*) FROM stripe_hooks_delivery")
            ).scalar_one()
            events = db.session.execute(sa.text("SELECT count(*) FROM stripe_hooks_event")).scalar()
        return deliveries, events

    def event_status(self, event_id: str) -> str | None:
        db = self.app.extensions["sqlalchemy"]
        with self.app.app_context():
            return db.session.execute(  # type: ignore[no-any-return]
                sa.text("SELECT status FROM stripe_hooks_event WHERE id = :id"), {"id": event_id}
            ).scalar()

    def stored_data(self, event_id: str) -> Any:
        """The event's ``data`` as the database holds it, numbers as exact decimals (JSONB
        keeps numbers as ``numeric``: ``1e3`` reads back as ``1000``)."""
        return exact(stored_text(self.app, event_id))

    def last_delivery(self) -> Any:
        db = self.app.extensions["sqlalchemy"]
        with self.app.app_context():
            return db.session.execute(
                sa.text(
                    "SELECT valid, outcome, error FROM stripe_hooks_delivery"
                    " ORDER BY id DESC LIMIT 1"
                )
            ).one()


def exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def build_target(backend: str, database_url: str) -> Target:
    hooks = StripeHooks()
    app = make_app(database_url, hooks)
    with app.app_context():
        endpoint = create_endpoint(app.extensions["sqlalchemy"], secret=new_secret())
    target = Target(
        backend=backend,
        app=app,
        client=app.test_client(),
        endpoint=endpoint,
        secret=endpoint.secrets[0]["secret"],
        other_secret=new_secret(),
    )

    @hooks.on("*")
    def every(event: Any, **kwargs: Any) -> None:
        target.handled.append(event.id)

    return target


@pytest.fixture(scope="module")
def sqlite_target() -> Iterator[Target]:
    # A file in memory where there is one: thousands of commits, no disk to wait for.
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=where) as folder:
        target = build_target("SQLite", f"sqlite:///{folder}/fuzz.db")
        yield target
        with target.app.app_context():
            target.app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture(scope="module")
def postgres_target(postgres_url: str) -> Iterator[Target]:
    reset_postgres(postgres_url)
    target = build_target("PostgreSQL", postgres_url)
    yield target
    with target.app.app_context():
        target.app.extensions["sqlalchemy"].engine.dispose()


# -- bodies ---------------------------------------------------------------------------------


@dataclass
class Body:
    kind: str
    data: bytes
    event_id: str | None = None  # set when the body is a real event Stripe could send

    def __repr__(self) -> str:  # hypothesis prints it when an example fails
        shown = self.data[:200] + (b"..." if len(self.data) > 200 else b"")
        return f"Body({self.kind!r}, {len(self.data)} bytes: {shown!r})"


_serial = itertools.count(1)
# Mostly fresh ids (hypothesis likes to repeat small values), now and then one seen before.
event_ids = st.integers(0, 7).flatmap(
    lambda n: (
        st.sampled_from(["evt_again1", "evt_again2"])
        if n == 0
        else st.builds(lambda: f"evt_fuzz{next(_serial):08d}")
    )
)
# Text Stripe could send: any Unicode but NUL (its API refuses NUL in strings).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=6,
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    extra = draw(st.dictionaries(texts.filter(bool), json_values, max_size=3))
    for key in ("id", "object", "metadata"):
        extra.pop(key, None)
    return build_event(
        draw(st.sampled_from(EVENT_TYPES)),
        extra,
        event_id=draw(event_ids),
        account=draw(st.none() | st.just("acct_1Fuzz")),
    )


def dumps(event: Any, style: int = 0) -> str:
    if style == 1:
        return json.dumps(event, indent=2, ensure_ascii=False)
    if style == 2:
        return json.dumps(event, separators=(",", ":"))
    return json.dumps(event)


@st.composite
def valid_bodies(draw: st.DrawFn) -> Body:
    event = draw(events())
    style = draw(st.integers(0, 2))
    return Body("event", dumps(event, style).encode(), event["id"])


# Changes to one field of a real event; None removes the field.
FIELD_MUTATIONS: list[tuple[str, Any]] = [
    (key, value)
    for key in ("id", "type", "livemode", "object", "data")
    for value in (None, "", 0, 1.5, True, [], {}, "x" * 300, "\x00", "\ud800")
] + [
    ("livemode", True),
    ("livemode", "false"),
    ("object", "customer"),
    ("account", {"id": "acct_1"}),
    ("account", 12),
    ("account", "acct_" + "x" * 300),
    ("api_version", "2099-01-01" * 20),
    ("api_version", ["2024-06-20"]),
    ("created", 10**20),
    ("created", -(10**20)),
    ("created", True),
    ("created", 1.5e9),
    ("created", "1700000000"),
    ("request", {"id": ["req"], "idempotency_key": {"k": 1}}),
    ("request", "req_" + "x" * 500),
    ("pending_webhooks", "many"),
]


@st.composite
def field_mutated_bodies(draw: st.DrawFn) -> Body:
    event = draw(events())
    key, value = draw(st.sampled_from(FIELD_MUTATIONS))
    if value is None:
        event.pop(key, None)
    else:
        event[key] = value
    return Body(f"field {key}={value!r:.20}", json.dumps(event).encode())


# Raw JSON values Python's json module accepts and Stripe never sends, put inside an event.
ODD_LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",  # 0.0 to Python, too small for a float
    "0e-20000",
    "0." + "0" * 20000,
    "1" * 5000,  # more digits than int() converts
    "-0",
    '"\\u0000"',
    '"a\\u0000b"',
    '"\\ud800"',
    '"\\udfff x"',
    '"\\ud83d\\ude00"',  # a valid surrogate pair (an emoji)
    '"\\\\u0000"',  # a backslash then u0000: plain text, no NUL
    '"\\u001f\\b\\f"',
    '"\\u2028\\u2029"',
]


@st.composite
def odd_value_bodies(draw: st.DrawFn) -> Body:
    event = draw(events())
    literal = draw(st.sampled_from(ODD_LITERALS))
    where = draw(st.sampled_from(["data.object", "data key", "top", "id", "type", "account"]))
    text = json.dumps(event)
    if where == "data.object":
        text = text.replace('"metadata": {}', f'"metadata": {{"k": {literal}}}', 1)
    elif where == "data key" and literal.startswith('"'):
        text = text.replace('"metadata": {}', f'"metadata": {{{literal}: 1}}', 1)
    elif where in ("id", "type", "account") and literal.startswith('"'):
        if where == "account":
            event["account"] = "ACCOUNT"
            text = json.dumps(event)
        old = json.dumps(event[where] if where != "account" else "ACCOUNT")
        text = text.replace(old, literal, 1)
    else:
        text = text[:-1] + f', "extra": {literal}}}'
    # The body is what it is: a valid event unless the literal breaks it.
    return Body(f"odd {literal[:12]} at {where}", text.encode())


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


DEPTHS = [2, 20, 64, 100, 101, 200, 500, 800, 900, 950, 980, 1000, 1500, 3000, 100_000]


@st.composite
def deep_bodies(draw: st.DrawFn) -> Body:
    depth = draw(st.sampled_from(DEPTHS) | st.integers(850, 1000))  # near the recursion limit
    mode = draw(st.sampled_from(["bare", "in event", "objects in event"]))
    if mode == "bare":
        return Body(f"nested {depth}", nested(depth).encode())
    event = draw(events())
    text = json.dumps(event)
    value = nested(depth) if mode == "in event" else '{"a":' * depth + "1" + "}" * depth
    text = text.replace('"metadata": {}', f'"metadata": {{"deep": {value}}}', 1)
    return Body(f"{mode} nested {depth}", text.encode())


@st.composite
def duplicate_key_bodies(draw: st.DrawFn) -> Body:
    event = draw(events())
    key, value = draw(
        st.sampled_from(
            [
                ("id", '"evt_other"'),
                ("id", "1"),
                ("livemode", "true"),
                ("livemode", "false"),
                ("object", '"customer"'),
                ("type", '"customer.created"'),
                ("data", "[]"),
            ]
        )
    )
    text = json.dumps(event)
    first = draw(st.booleans())
    if first:  # the duplicate comes first: the event's own value wins
        text = "{" + f'"{key}": {value}, ' + text[1:]
    else:  # the duplicate comes last and wins
        text = text[:-1] + f', "{key}": {value}}}'
    return Body(f"duplicate {key} {'first' if first else 'last'}", text.encode())


@st.composite
def encoding_bodies(draw: st.DrawFn) -> Body:
    event = draw(events())
    text = json.dumps(event, ensure_ascii=False)
    how = draw(st.sampled_from(["bom", "utf-16", "latin-1", "bad byte", "cut utf-8", "nul"]))
    if how == "bom":
        data = text.encode("utf-8-sig")
    elif how == "utf-16":
        data = text.encode("utf-16")
    elif how == "latin-1":
        text = text.replace('"metadata": {}', '"metadata": {"name": "Zoë"}')
        data = text.encode("latin-1", "replace")
    elif how == "bad byte":
        at = draw(st.integers(0, len(text)))
        data = text[:at].encode() + draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80"]))
        data += text[at:].encode()
    elif how == "cut utf-8":
        data = (text[:-1] + ', "n": "é"}').encode()[:-3]
    else:
        data = text.encode().replace(b'"metadata": {}', b'"metadata": {"k": "a\x00b"}')
    return Body(f"encoding {how}", data)


@st.composite
def not_event_bodies(draw: st.DrawFn) -> Body:
    choice = draw(
        st.sampled_from(["json value", "object", "text", "bytes", "cut", "empty", "form"])
    )
    if choice == "json value":
        data = json.dumps(draw(json_values)).encode()
    elif choice == "object":
        obj = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
        obj.setdefault("object", draw(st.sampled_from(["customer", "list", "event", ""])))
        data = json.dumps(obj).encode()
    elif choice == "text":
        data = draw(st.text(max_size=200)).encode()
    elif choice == "bytes":
        data = draw(st.binary(max_size=200))
    elif choice == "cut":
        text = json.dumps(draw(events()))
        data = text[: draw(st.integers(0, len(text) - 1))].encode()
    elif choice == "empty":
        data = b""
    else:
        data = b"id=evt_1&object=event&type=customer.created&livemode=false"
    return Body(f"not an event: {choice}", data)


@st.composite
def huge_bodies(draw: st.DrawFn) -> Body:
    event = draw(events())
    size = draw(st.sampled_from([MAX_BODY, MAX_BODY + 1, TEN_MB]))
    text = json.dumps(event)
    pad = size - len(text) - len(', "pad": ""')
    text = text[:-1] + ', "pad": "' + "x" * pad + '"}'
    assert len(text) == size
    # A body of exactly the limit is a real event and must be accepted.
    return Body(f"{size} bytes", text.encode(), event["id"] if size <= MAX_BODY else None)


# Weighted: real events most often, 10 MB bodies now and then.
BODY_KINDS = (
    [valid_bodies()] * 10
    + [field_mutated_bodies(), odd_value_bodies(), not_event_bodies()] * 3
    + [deep_bodies(), duplicate_key_bodies(), encoding_bodies()] * 2
    + [huge_bodies()]
)
bodies = st.sampled_from(BODY_KINDS).flatmap(lambda kind: kind)


# -- signatures ------------------------------------------------------------------------------

# A signature recipe: (body, secret, other secret, now) → header (None: no header), and
# whether it is valid by construction (None: let stripe-python judge).
Recipe = Callable[[bytes, str, str, int], "str | None"]


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """stripe-python's own header; bodies that are not UTF-8 are signed over their bytes
    decoded with replacement (a header no UTF-8 check can pass)."""
    text = body.decode("utf-8", "replace")
    return stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=timestamp)


def v1(header: str) -> str:
    return header.split(",v1=", 1)[1]


@dataclass(frozen=True)
class Signature:
    name: str
    make: Recipe
    valid: bool | None  # by construction; None when only stripe-python can tell

    def __repr__(self) -> str:
        return f"Signature({self.name!r})"


FAKE = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"


def _signatures() -> list[Signature]:
    def s(name: str, valid: bool | None) -> Callable[[Recipe], Signature]:
        return lambda make: Signature(name, make, valid)

    out = [
        s("valid", True)(lambda b, k, o, t: sign(b, k, t)),
        s("missing", False)(lambda b, k, o, t: None),
        s("empty", False)(lambda b, k, o, t: ""),
        s("no v1", False)(lambda b, k, o, t: f"t={t}"),
        s("v0 only", False)(lambda b, k, o, t: f"t={t},v0={v1(sign(b, k, t))}"),
        s("v1 and v0", True)(lambda b, k, o, t: f"t={t},v0={FAKE},v1={v1(sign(b, k, t))}"),
        s("several v1, one good", True)(
            lambda b, k, o, t: f"t={t},v1={FAKE},v1={v1(sign(b, k, t))},v1={FAKE}"
        ),
        s("several v1, none good", False)(
            lambda b, k, o, t: f"t={t},v1={FAKE},v1={v1(sign(b, o, t))}"
        ),
        s("other secret", False)(lambda b, k, o, t: sign(b, o, t)),
        s("space after comma", False)(lambda b, k, o, t: sign(b, k, t).replace(",", ", ")),
        s("spaces around =", False)(lambda b, k, o, t: sign(b, k, t).replace("=", " = ")),
        s("leading space", False)(lambda b, k, o, t: " " + sign(b, k, t)),
        s("trailing space", False)(lambda b, k, o, t: sign(b, k, t) + " "),
        s("upper case keys", False)(
            lambda b, k, o, t: sign(b, k, t).replace("t=", "T=").replace("v1=", "V1=")
        ),
        s("upper case hex", False)(lambda b, k, o, t: f"t={t},v1={v1(sign(b, k, t)).upper()}"),
        s("t without sign", False)(lambda b, k, o, t: f"v1={v1(sign(b, k, t))}"),
        s("t not a number", False)(lambda b, k, o, t: f"t=soon,v1={v1(sign(b, k, t))}"),
        s("t=now re-stamped", False)(
            lambda b, k, o, t: f"t={t},v1={v1(sign(b, k, t - TOLERANCE - 60))}"
        ),
        s("second t first", False)(lambda b, k, o, t: f"t={t + 1}," + sign(b, k, t)),
        s("second t last", None)(lambda b, k, o, t: sign(b, k, t) + f",t={t + 1}"),
        s("padded t", None)(lambda b, k, o, t: f"t=00{t},v1={v1(sign(b, k, t))}"),
        s("two headers joined", True)(lambda b, k, o, t: sign(b, k, t) + ", " + sign(b, o, t)),
        s("stale", False)(lambda b, k, o, t: sign(b, k, t - TOLERANCE - 1)),
        s("very stale", False)(lambda b, k, o, t: sign(b, k, t - 10**8)),
        s("future", False)(lambda b, k, o, t: sign(b, k, t + TOLERANCE + 5)),
        s("far future", False)(lambda b, k, o, t: sign(b, k, t + 10**12)),
        s("negative t", False)(lambda b, k, o, t: sign(b, k, -t)),
        s("just inside the window", True)(lambda b, k, o, t: sign(b, k, t - TOLERANCE + 30)),
        s("just inside, future", True)(lambda b, k, o, t: sign(b, k, t + TOLERANCE - 30)),
        s("eight v1, good one last", True)(
            lambda b, k, o, t: f"t={t}" + f",v1={FAKE}" * 7 + f",v1={v1(sign(b, k, t))}"
        ),
        # stripe-python accepts the next two; the extension refuses them (more than
        # MAX_SIGNATURES, a header over MAX_SIGNATURE_HEADER): tests/test_trust.py.
        s("nine v1, good one first", None)(lambda b, k, o, t: sign(b, k, t) + f",v1={FAKE}" * 8),
        s("huge header, good one inside", None)(
            lambda b, k, o, t: sign(b, k, t) + f",v1={FAKE}" * 1500
        ),
        s("huge header of junk", False)(
            lambda b, k, o, t: f"t={t}," + "x=" * 50_000 + f",v1={FAKE}"
        ),
        s("huge t", False)(lambda b, k, o, t: f"t={'9' * 5000},v1={FAKE}"),
        s("body with a newline added", False)(lambda b, k, o, t: sign(b + b"\n", k, t)),
    ]
    return out


SIGNATURES = _signatures()


@st.composite
def signatures(draw: st.DrawFn) -> Signature:
    sig = draw(st.sampled_from(SIGNATURES[:1] * 30 + SIGNATURES))  # half are valid
    if draw(st.integers(0, 9)) == 0:  # now and then: cut it short, or random text
        if draw(st.booleans()):
            cut = draw(st.integers(0, 80))
            return Signature(
                f"{sig.name}, cut at {cut}",
                lambda b, k, o, t: (sig.make(b, k, o, t) or "")[:cut],
                None,
            )
        text = draw(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=120))
        return Signature(f"random {text!r}", lambda b, k, o, t: text, None)
    return sig


def stripe_accepts(body: bytes, header: str | None, secret: str, now: float) -> bool:
    """The reference: stripe-python's ``verify_header``, and the time window both ways."""
    if not header:
        return False
    try:
        text = body.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, header, secret, None)
        timestamp, _ = stripe.WebhookSignature._get_timestamp_and_signatures(header, "v1")
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
        return False
    return abs(timestamp - now) <= TOLERANCE


def utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- the request's shape ------------------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "\x7f/\x01",
]


@dataclass(frozen=True)
class Shape:
    method: str = "POST"
    content_type: str | None = "application/json"
    path: str = "endpoint"  # "endpoint", "no slash", "upper", "unknown", "not a uuid"
    framing: str = "length"  # "length", "chunked", "short length", "long length"

    @property
    def normal(self) -> bool:
        return self.method == "POST" and self.framing in ("length", "chunked")


shapes = st.builds(
    Shape,
    method=st.sampled_from(["POST"] * 25 + ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    content_type=st.sampled_from(CONTENT_TYPES[:1] * 8 + CONTENT_TYPES),
    path=st.sampled_from(["endpoint"] * 25 + ["no slash", "upper", "unknown", "not a uuid"]),
    framing=st.sampled_from(["length"] * 15 + ["chunked"] * 3 + ["short length", "long length"]),
)


class CountingStream(io.BytesIO):
    """The request body, counting how much of it the app reads."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        chunk = super().readline(size)
        self.read_bytes += len(chunk)
        return chunk


# -- one example ---------------------------------------------------------------------------------


def check(target: Target, body: Body, sig: Signature, shape: Shape) -> None:
    now = int(time.time())
    header = sig.make(body.data, target.secret, target.other_secret, now)
    paths = {
        "endpoint": target.path,
        "no slash": target.path.rstrip("/"),
        "upper": target.path.upper().replace("/STRIPE/WEBHOOK/", "/stripe/webhook/"),
        "unknown": f"/stripe/webhook/{uuid.uuid4()}/",
        "not a uuid": f"/stripe/webhook/{target.endpoint.uuid.hex}x/",
    }
    headers = {} if header is None else {"Stripe-Signature": header}
    if shape.content_type is not None:
        headers["Content-Type"] = shape.content_type
    stream = CountingStream(body.data)
    environ: dict[str, Any] = {}
    length: int | None = len(body.data)
    if shape.framing == "chunked":
        length = None
        headers["Transfer-Encoding"] = "chunked"
        environ["wsgi.input_terminated"] = True  # as gunicorn and the dev server set it
    elif shape.framing == "short length":
        length = max(len(body.data) - 7, 0)
    elif shape.framing == "long length":
        length = len(body.data) + 7

    signed_ok = stripe_accepts(body.data, header, target.secret, now)
    if sig.valid is not None and utf8(body.data):
        assert signed_ok == sig.valid, f"{sig} should be {sig.valid} for stripe-python"
    known_path = shape.path in ("endpoint", "no slash", "upper")
    before_status = target.event_status(body.event_id) if body.event_id else None
    deliveries_before, events_before = target.counts()
    handled_before = len(target.handled)

    response = target.client.open(
        paths[shape.path],
        method=shape.method,
        headers=headers,
        input_stream=stream,
        content_length=length,
        environ_overrides=environ,
    )
    count("requests fuzzed")
    count(f"requests fuzzed on {target.backend}")
    status = response.status_code
    text = response.get_data(as_text=True)
    deliveries_after, events_after = target.counts()
    new_deliveries = deliveries_after - deliveries_before
    new_handled = target.handled[handled_before:]

    # Never a 5xx; a refusal is short, plain and without a traceback.
    assert status < 500, (status, text)
    assert "Traceback" not in text and len(text) < 400, text
    # At most one delivery row per request.
    assert new_deliveries in (0, 1)
    # The body limit, before the body is read whole.
    if length is not None and length > MAX_BODY:
        assert stream.read_bytes == 0
    assert stream.read_bytes <= MAX_BODY + 1

    if shape.method == "OPTIONS" and shape.path != "not a uuid":
        # Flask's automatic answer on every form of the URL, the same for an unknown uuid:
        # it tells nothing about which endpoints exist.
        assert status == 200 and set(response.allow) == {"OPTIONS", "POST"} and not text
        assert new_deliveries == 0 and events_after == events_before and new_handled == []
        count("fuzzed OPTIONS requests")
        return
    if status < 300:
        # Accepted: only a POST with a signature stripe-python accepts, to this endpoint.
        assert shape.method == "POST" and known_path and signed_ok, (status, text)
        outcome = text.strip()
        assert outcome in ("processed", "duplicate"), outcome
        assert new_deliveries == 1
        delivery = target.last_delivery()
        assert delivery.valid and delivery.outcome == outcome
        event_id = json.loads(body.data)["id"]
        lost = target.event_status(event_id) != "processed"  # a 2xx means it is durable
        count("events lost", int(lost))
        count("accepted events checked durable")
        assert not lost
        assert new_handled == ([event_id] if outcome == "processed" else [])
        count("fuzzed requests accepted")
        if outcome == "processed":
            # Stored as Python parsed it (what the handlers saw), not as the body wrote it.
            parsed = json.loads(body.data)["data"]
            assert target.stored_data(event_id) == exact(json.dumps(parsed))
            count("fuzzed events stored")
        return

    # Refused: nothing stored, no handler ran.
    assert 400 <= status < 500, status
    assert events_after == events_before and new_handled == []
    if new_deliveries:
        delivery = target.last_delivery()
        assert not delivery.valid and delivery.outcome == "rejected"
        # The reason answered; a cut body or header is noted after it.
        assert status == 400 and delivery.error and delivery.error.startswith(text.strip())
    if status == 400 and response.mimetype == "text/plain":
        assert 0 < len(text.strip()) < 80 and "\n" not in text.strip(), text
    if header is None or not known_path or shape.method != "POST" or status == 413:
        assert new_deliveries == 0
    count("fuzzed requests refused")

    # A request built valid is never refused (unless it was too large or mis-framed).
    if body.event_id and sig.valid and shape.normal and known_path and len(body.data) <= MAX_BODY:
        pytest.fail(f"valid delivery refused: {status} {text!r} (event was {before_status})")


def run(target: Target, examples: int) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, sig=signatures(), shape=shapes)
    def fuzz(body: Body, sig: Signature, shape: Shape) -> None:
        check(target, body, sig, shape)

    fuzz()


def test_fuzz_sqlite(sqlite_target: Target) -> None:
    run(sqlite_target, SQLITE_EXAMPLES)


@pytest.mark.postgres
def test_fuzz_postgresql(postgres_target: Target) -> None:
    run(postgres_target, POSTGRES_EXAMPLES)
