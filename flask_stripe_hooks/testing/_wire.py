"""Stripe's wire format as :class:`~flask_stripe_hooks.testing.FakeStripe` reads and
writes it: form-encoded bodies back into nested values, a recorded request, Stripe's error
bodies, the pages of a list."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_PART = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into nested values: ``a[0]=x`` → ``{"a": ["x"]}``,
    ``m[k]=v`` → ``{"m": {"k": "v"}}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        base = key.split("[", 1)[0]
        parts = [base, *_PART.findall(key[len(base) :])]
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = None if last else parts[i + 1]
            empty: Any = [] if nxt is not None and (nxt.isdigit() or nxt == "") else {}
            if isinstance(node, list):
                index = int(part) if part.isdigit() else len(node)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = empty
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, empty)
    return out


@dataclass
class Recorded:
    """One request as it reached the fake."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    pairs: list[tuple[str, str]]
    form: dict[str, Any]
    #: The body as sent (JSON for ``/v2/...`` requests).
    body: str = ""

    @property
    def api_key(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class StripeError(Exception):
    """Raised inside the fake to answer with Stripe's error JSON and status code."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "type": "invalid_request_error" if status < 500 else "api_error",
                "message": message,
                **({"param": param} if param else {}),
                **({"code": code} if code else {}),
            }
        }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def not_found(kind: str, object_id: str, code: str = "resource_missing") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", param="id", code=code)


def last_segment(context: str) -> str:
    """The account a ``Stripe-Context`` acts in: its last segment (``acct_1/acct_2`` →
    ``acct_2``)."""
    return context.rsplit("/", 1)[-1]


def page(objects: Iterable[dict[str, Any]], query: dict[str, Any], url: str) -> dict[str, Any]:
    """One page of a v1 list, newest first: ``starting_after`` and ``limit`` (1-100)."""
    found = sorted(objects, key=lambda o: (o["created"], o["id"]), reverse=True)
    after = query.get("starting_after")
    if after:
        ids = [o["id"] for o in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    limit = int(query.get("limit") or 10)
    if not 1 <= limit <= 100:
        raise StripeError(400, "Invalid integer: limit must be between 1 and 100.", param="limit")
    return {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "url": url}
