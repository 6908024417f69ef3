"""Checks of the public base URL an endpoint is created for: Stripe must be able to reach it."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from .errors import EndpointError

_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".test")
LISTEN_HINT = (
    "For local development run 'flask stripe-hooks listen': the Stripe CLI forwards events"
    " to this app without a public URL."
)


def _is_private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a single-label name is never public
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_base_url(url: str) -> str:
    """The app's public base URL, normalised (no trailing slash); raises :class:`EndpointError`.

    Only ``http``/``https``; localhost, loopback, private, link-local and other non-public
    hosts are refused, with a pointer to ``flask stripe-hooks listen``: Stripe cannot reach
    them.
    """
    text = (url or "").strip()
    if not text:
        raise EndpointError(
            "Enter the public base URL of this app, e.g. https://example.com.", "url"
        )
    parts = urlsplit(text)
    try:
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        host = ""
    if parts.scheme not in ("http", "https") or not host:
        raise EndpointError(
            f"{text!r} is not an http(s) URL; write it as https://example.com.", "url"
        )
    if parts.query or parts.fragment:
        raise EndpointError("The base URL takes no query string or fragment.", "url")
    if parts.username or parts.password:
        raise EndpointError("The base URL takes no user name or password.", "url")
    if _is_private_host(host):
        raise EndpointError(
            f"Stripe cannot reach {host}: it is not a public address. {LISTEN_HINT}", "url"
        )
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))
