"""Guards of the receiving path: who may post (an allowlist of addresses,
``STRIPE_HOOKS_ALLOWED_IPS``, off by default), how many rejected deliveries an endpoint keeps
and how much of each (``STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE``, 60 by default,
``STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE``, 256 KiB, and ``STRIPE_HOOKS_REJECTED_PREFIX``,
4 KiB), and what of a delivery is kept (``STRIPE_HOOKS_STORE_BODY`` and
``STRIPE_HOOKS_REDACT``, which keep everything by default).

``init_app`` parses the settings once into :class:`~flask_stripe_hooks.state.State`; the
pipeline asks here only when a setting is on.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..ips import stripe_ips
from ..outcomes import DEAD, FAILED, IGNORED, REJECTED, RETRYING

log = logging.getLogger("flask_stripe_hooks")

#: The entry of ``STRIPE_HOOKS_ALLOWED_IPS`` that stands for Stripe's published list.
STRIPE = "stripe"

#: ``STRIPE_HOOKS_STORE_BODY``: the delivery outcomes whose raw body is kept (``None``: all).
STORE_BODY: dict[str, frozenset[str] | None] = {
    "always": None,
    "failed": frozenset({REJECTED, FAILED, RETRYING, IGNORED, DEAD}),
    "never": frozenset(),
}

Check = Callable[[str | None], bool]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Tally:
    """A count logged at most once a minute, with how many happened since the last line:
    a flood costs one log line a minute, not one a request. ``message`` names them
    ``%(count)d`` (how many since the last line) and ``%(detail)s`` (the latest one)."""

    def __init__(self, message: str, every: float = 60.0) -> None:
        self.message = message
        self.every = every
        self.total = 0
        self._since = 0
        self._logged = -every
        self._lock = threading.Lock()

    def add(self, detail: Any) -> None:
        with self._lock:
            self.total += 1
            self._since += 1
            now = time.monotonic()
            if now - self._logged < self.every:
                return
            since, self._since, self._logged = self._since, 0, now
        log.warning(self.message, {"count": since, "detail": detail})


#: What to check, by the reason a delivery was rejected.
_CHECKS = {
    "signature does not match": (
        "The sender signs with another secret than this endpoint's. A 'stripe listen' session"
        " signs with the secret it prints when it starts (whsec_..., the same for every"
        " endpoint it forwards to), not with the Dashboard's endpoint secret, and the other"
        " way round. Store the one the sender uses: flask stripe-hooks set-secret {uuid}"
        " whsec_..."
    ),
    "endpoint has no active signing secret": (
        "Every secret of this endpoint has expired. Store the current one: flask stripe-hooks"
        " set-secret {uuid} whsec_..."
    ),
    "timestamp outside the tolerance": (
        "The signature is older than STRIPE_HOOKS_TOLERANCE allows: check this server's clock,"
        " or whether the delivery was replayed."
    ),
    "timestamp in the future": "Check this server's clock (NTP).",
}


class Notices:
    """The receiving path's warnings that a person must act on, each logged at most once a
    minute (per endpoint for rejected deliveries): a flood costs one line a minute."""

    def __init__(self) -> None:
        self.schema = Tally(
            "%(detail)s Answered 503 to %(count)d delivery(ies) since the last line."
        )
        self._rejected: dict[Any, Tally] = {}
        self._lock = threading.Lock()

    def rejected(self, endpoint: Any, reason: str) -> None:
        """A delivery to ``endpoint`` (an ``EndpointInfo``) failed verification for
        ``reason``."""
        endpoint_uuid = endpoint.uuid
        tally = self._rejected.get(endpoint_uuid)
        if tally is None:
            with self._lock:
                tally = self._rejected.setdefault(
                    endpoint_uuid,
                    Tally(
                        f"rejected %(count)d delivery(ies) to endpoint {endpoint_uuid} since"
                        " the last line; the latest: %(detail)s"
                    ),
                )
        check = _CHECKS.get(reason)
        detail = f"{reason}. {check.format(uuid=endpoint_uuid)}" if check else reason
        if reason == "signature does not match":
            detail += f" (checked against its {len(endpoint.secrets)} active secret(s))"
        tally.add(detail)


# -- the allowlist -------------------------------------------------------------------------


class Allowlist:
    """Addresses and networks a delivery may come from; called with ``remote_addr``."""

    def __init__(self, networks: Iterable[_Network]) -> None:
        networks = list(networks)
        single = {n for n in networks if n.num_addresses == 1}
        #: Exact addresses, matched as strings first (the common case: Stripe's list).
        self.addresses = frozenset(str(n.network_address) for n in single)
        self.networks = [n for n in networks if n not in single]

    def __call__(self, remote_addr: str | None) -> bool:
        if remote_addr in self.addresses:
            return True
        try:
            address = ipaddress.ip_address(remote_addr or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:3.18.12.63, from a dual-stack socket
        if address.compressed in self.addresses:
            return True
        return any(address in network for network in self.networks)


class AddressGuard:
    """The allowlist with its refusals counted and logged once a minute."""

    def __init__(self, allows: Check) -> None:
        self.allows = allows
        self.refused = Tally(
            "refused %(count)d request(s) from addresses not in STRIPE_HOOKS_ALLOWED_IPS"
            " since the last line (the latest from %(detail)s)"
        )

    def __call__(self, remote_addr: str | None) -> bool:
        if self.allows(remote_addr):
            return True
        self.refused.add(remote_addr)
        return False


def parse_allowlist(value: Any, instance_path: str | None = None) -> AddressGuard | None:
    """``STRIPE_HOOKS_ALLOWED_IPS`` as a check of ``remote_addr``; ``None``: off.

    A callable ``(remote_addr) -> bool`` is used as it is; a string or a list holds
    addresses, CIDR networks and ``"stripe"`` (Stripe's list). A bad entry raises
    ``RuntimeError`` naming the key and the entry.
    """
    key = "STRIPE_HOOKS_ALLOWED_IPS"
    if value is None:
        return None
    if callable(value):
        return AddressGuard(value)
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple, set, frozenset)) or not entries:
        raise RuntimeError(
            f'{key} must be "stripe", a list of addresses or networks, or a callable,'
            f" not {value!r}."
        )
    networks: list[_Network] = []
    for entry in entries:
        texts = stripe_ips(instance_path) if entry == STRIPE else [entry]
        for text in texts:
            try:
                networks.append(ipaddress.ip_network(str(text).strip(), strict=False))
            except ValueError:
                raise RuntimeError(
                    f'{key}: {entry!r} is not an address, a network (10.0.0.0/8) or "stripe".'
                ) from None
    return AddressGuard(Allowlist(networks))


# -- rejected deliveries ---------------------------------------------------------------------


class RejectedLimit:
    """At most ``per_minute`` rejected deliveries, and ``bytes_per_minute`` bytes of them,
    stored per endpoint and minute (``None``: no such bound); the rest are counted (per
    process) and logged once a minute."""

    def __init__(self, per_minute: int | None, bytes_per_minute: int | None = None) -> None:
        self.per_minute = per_minute
        self.bytes_per_minute = bytes_per_minute
        self._minute = 0
        #: endpoint id -> (rows, bytes) stored this minute.
        self._stored: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self.dropped = Tally(
            "did not store %(count)d rejected delivery(ies) over"
            " STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE or STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE"
            " since the last line (the latest to endpoint id %(detail)s)"
        )

    def keep(self, endpoint_id: int, size: int = 0) -> bool:
        """Whether to store this rejected delivery, of ``size`` bytes."""
        minute = int(time.time() // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._stored = minute, {}
            rows, stored = self._stored.get(endpoint_id, (0, 0))
            if (self.per_minute is None or rows < self.per_minute) and (
                self.bytes_per_minute is None or stored + size <= self.bytes_per_minute
            ):
                self._stored[endpoint_id] = (rows + 1, stored + size)
                return True
        self.dropped.add(endpoint_id)
        return False


def _count_setting(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RuntimeError(f"{key} must be a whole number (0 or more) or None, not {value!r}.")
    return value


def parse_rejected_limit(per_minute: Any, bytes_per_minute: Any = None) -> RejectedLimit | None:
    """``STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE`` and ``..._BYTES_PER_MINUTE`` as one
    :class:`RejectedLimit`; ``None`` when both are off."""
    rows = _count_setting("STRIPE_HOOKS_MAX_REJECTED_PER_MINUTE", per_minute)
    size = _count_setting("STRIPE_HOOKS_MAX_REJECTED_BYTES_PER_MINUTE", bytes_per_minute)
    return None if rows is None and size is None else RejectedLimit(rows, size)


def parse_rejected_prefix(value: Any) -> int | None:
    """``STRIPE_HOOKS_REJECTED_PREFIX``: how much of a rejected delivery is kept (``None``:
    all of it)."""
    return _count_setting("STRIPE_HOOKS_REJECTED_PREFIX", value)


def cut(body: bytes, headers: dict[str, str], prefix: int) -> tuple[bytes, dict[str, str], str]:
    """A rejected delivery's body and headers as they are kept: the first ``prefix`` bytes of
    the body, and the headers' values cut to ``prefix`` characters in all (in their order,
    so the short ones come whole). The text says what was cut (``""``: nothing)."""
    notes = []
    if len(body) > prefix:
        notes.append(f"kept {prefix} of {len(body)} body bytes")
        body = body[:prefix]
    room, kept = prefix, {}
    for name, value in headers.items():
        kept[name] = value[: max(room, 0)]
        room -= len(value)
        if len(kept[name]) < len(value):
            notes.append(f"{name} cut to {len(kept[name])} of {len(value)} characters")
    return body, kept, "; ".join(notes)


# -- what is kept ------------------------------------------------------------------------------


def parse_store_body(value: Any, redact: Any) -> frozenset[str] | None:
    """``STRIPE_HOOKS_STORE_BODY`` as the outcomes whose body is kept (``None``: all).

    Unset (``None``), it is ``"always"``, or ``"failed"`` when ``STRIPE_HOOKS_REDACT`` is set:
    a processed delivery's body holds what the redaction removes. ``"always"`` together with
    ``STRIPE_HOOKS_REDACT`` is refused at start-up for that reason.
    """
    if value is None:
        value = "always" if redact is None else "failed"
    if value not in STORE_BODY:
        raise RuntimeError(
            f'STRIPE_HOOKS_STORE_BODY must be "always", "failed" or "never", not {value!r}.'
        )
    if redact is not None and value == "always":
        raise RuntimeError(
            'STRIPE_HOOKS_STORE_BODY = "always" keeps every raw body, which holds what'
            ' STRIPE_HOOKS_REDACT removes from the stored event. Set it to "failed" or'
            ' "never", or leave it unset (then it is "failed" while STRIPE_HOOKS_REDACT is set).'
        )
    return STORE_BODY[value]


def redacted(redact: Callable[[Any], Any], data: Any) -> Any:
    """What ``STRIPE_HOOKS_REDACT`` keeps of an event's ``data`` (given a deep copy)."""
    return redact(_copy(data))


def _copy(value: Any) -> Any:
    """A deep copy of parsed JSON: only dicts and lists are containers (``copy.deepcopy``
    costs three times as much, keeping a memo for objects JSON cannot hold)."""
    kind = type(value)
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    return value
