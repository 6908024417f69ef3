"""Stripe's published list of webhook addresses: the copy shipped with the package, the
copy ``flask stripe-hooks update-ips`` saves in the app's instance folder, and the fetch
that refreshes it. ``STRIPE_HOOKS_ALLOWED_IPS = "stripe"`` reads it."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

#: Stripe's list of webhook addresses: shipped with the package, refreshed by
#: ``flask stripe-hooks update-ips`` into the app's instance folder (preferred when there).
IPS_FILE = "stripe_webhook_ips.json"
#: Where Stripe publishes it (``{"WEBHOOKS": [...]}``).
IPS_URL = "https://stripe.com/files/ips/ips_webhooks.json"


def stripe_ips(instance_path: str | None = None) -> list[str]:
    """Stripe's webhook addresses: the copy ``update-ips`` saved in the instance folder when
    there is one, else the list shipped with the package."""
    saved = Path(instance_path, IPS_FILE) if instance_path else None
    if saved is not None and saved.is_file():
        text = saved.read_text("utf-8")
    else:
        text = resources.files(__package__).joinpath("data").joinpath(IPS_FILE).read_text("utf-8")
    return read_ips(text)


def read_ips(text: str) -> list[str]:
    """The addresses of Stripe's JSON list (``{"WEBHOOKS": [...]}``), each checked; a
    ``ValueError`` says what is wrong with it."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    ips = data.get("WEBHOOKS") if isinstance(data, dict) else None
    if not isinstance(ips, list):
        raise ValueError('no "WEBHOOKS" list')
    if not ips:
        raise ValueError('the "WEBHOOKS" list is empty')
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"{ip!r} is not an IP address") from None
    return ips


def update_ips(instance_path: str, url: str = IPS_URL, timeout: float = 30) -> list[str]:
    """Fetch Stripe's list of webhook addresses from ``url`` and save it in the instance
    folder, where :func:`stripe_ips` prefers it. A failure (the network, bad JSON, no or an
    empty ``WEBHOOKS`` list, an entry that is not an address) raises ``ValueError`` with the
    reason and keeps the current list."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read(1024 * 1024).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the answer's connection
        raise ValueError(f"could not fetch {url}: {exc}") from None
    except (OSError, ValueError) as exc:  # URLError, a timeout, a bad URL
        raise ValueError(f"could not fetch {url}: {exc}") from None
    try:
        ips = read_ips(text)
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / (IPS_FILE + ".tmp")
    temporary.write_text(json.dumps({"WEBHOOKS": ips}, indent=2) + "\n", "utf-8")
    temporary.replace(folder / IPS_FILE)
    return ips
