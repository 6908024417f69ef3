"""Signing secrets encrypted at rest with ``STRIPE_HOOKS_ENCRYPTION_KEY`` (Fernet).

With a key set, every ``secret`` of an endpoint's ``secrets`` column is stored as
``"fernet:" + token``; the prefix tells an encrypted value from one in the clear, so a table can
be migrated row by row (``flask stripe-hooks encrypt-secrets``). The key may be a list: the first
encrypts, all decrypt (``MultiFernet``), and ``rotate-encryption-key`` re-encrypts with the
first. Decrypted secrets live only in memory (the endpoint cache). Without a key nothing is
imported and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .errors import UnreadableSecret
from .models import WebhookEndpoint
from .state import get_state

if TYPE_CHECKING:
    from .state import State

PREFIX = "fernet:"
KEY = "STRIPE_HOOKS_ENCRYPTION_KEY"
#: What ends every message about a secret that cannot be decrypted.
CHECK = "'flask stripe-hooks check-encryption' lists the endpoints concerned."
_MAKE_ONE = (
    'make one with: python -c "from cryptography.fernet import Fernet;'
    ' print(Fernet.generate_key().decode())"'
)


def load_key(value: Any) -> Any:
    """``STRIPE_HOOKS_ENCRYPTION_KEY`` (one key, or a list) as a ``MultiFernet``; ``None``
    when unset. A key that is not a Fernet key, or a missing ``cryptography``, raises
    ``RuntimeError`` saying what to do."""
    if not value:
        return None
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise RuntimeError(
            f'{KEY} is set, which needs cryptography: pip install "flask-stripe-hooks[crypto]".'
        ) from None
    keys = [value] if isinstance(value, (str, bytes)) else list(value)
    fernets = []
    for index, key in enumerate(keys):
        try:
            fernets.append(Fernet(key.strip() if isinstance(key, (str, bytes)) else key))
        except (ValueError, TypeError):
            name = KEY if len(keys) == 1 else f"{KEY}[{index}]"
            raise RuntimeError(
                f"{name} is not a Fernet key (32 url-safe base64-encoded bytes); {_MAKE_ONE}."
            ) from None
    if not fernets:
        raise RuntimeError(f"{KEY} is an empty list; {_MAKE_ONE}.")
    return MultiFernet(fernets)


_KEY_NAMES = ("secret_key", "test_secret_key", "live_secret_key")


def open_api_keys(config: dict[str, Any], fernet: Any) -> None:
    """Decrypt, in ``config`` (the state's copy), the Stripe API keys given as ``"fernet:..."``:
    ``STRIPE_SECRET_KEY``, ``STRIPE_TEST_SECRET_KEY``, ``STRIPE_LIVE_SECRET_KEY`` and those of
    ``STRIPE_HOOKS_ACCOUNTS``. One that cannot be decrypted raises ``RuntimeError`` naming it."""
    places = [(config, f"STRIPE_{name.upper()}", f"STRIPE_{name.upper()}") for name in _KEY_NAMES]
    given = config.get("STRIPE_HOOKS_ACCOUNTS") or {}
    accounts = {name: dict(v) if isinstance(v, dict) else v for name, v in given.items()}
    config["STRIPE_HOOKS_ACCOUNTS"] = accounts
    for account, settings in accounts.items():
        if isinstance(settings, dict):
            where = f"STRIPE_HOOKS_ACCOUNTS[{account!r}]"
            places += [(settings, name, f"{where}[{name!r}]") for name in _KEY_NAMES]
    for holder, name, label in places:
        value = holder.get(name)
        if isinstance(value, str) and sealed(value):
            if fernet is None:
                raise RuntimeError(f"{label} is encrypted ('fernet:...') and {KEY} is not set.")
            try:
                holder[name] = fernet.decrypt(value[len(PREFIX) :].strip().encode()).decode()
            except Exception:
                raise RuntimeError(f"{label} cannot be decrypted with {KEY}.") from None


def sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal(secret: str, state: State | None = None) -> str:
    """``secret`` as it is stored: encrypted with the first key, or as is without a key."""
    fernet = (state or get_state()).fernet
    if fernet is None or sealed(secret):
        return secret
    return PREFIX + str(fernet.encrypt(secret.encode()).decode())


def unreadable_reason(state: State) -> str:
    """Why a stored secret cannot be decrypted with the key configured in ``state``."""
    if state.fernet is None:
        return f"A signing secret is encrypted and {KEY} is not set."
    return (
        f"A signing secret cannot be decrypted with {KEY}: the key that encrypted it is not"
        " in the list."
    )


def unseal(value: str, state: State | None = None) -> str:
    """A stored secret in the clear; :class:`UnreadableSecret` when the key cannot read it
    (its message names ``STRIPE_HOOKS_ENCRYPTION_KEY`` and ``check-encryption``)."""
    if not sealed(value):
        return value
    state = state or get_state()
    if state.fernet is None:
        raise UnreadableSecret(f"{unreadable_reason(state)} {CHECK}")
    from cryptography.fernet import InvalidToken

    try:
        return state.fernet.decrypt(value[len(PREFIX) :].encode()).decode()  # type: ignore[no-any-return]
    except InvalidToken:
        raise UnreadableSecret(f"{unreadable_reason(state)} {CHECK}") from None


def opener(state: State) -> Callable[[str], str]:
    """``unseal`` bound to ``state``, for :func:`~flask_stripe_hooks.models.active_secrets`."""
    return lambda value: unseal(value, state)


def opened(
    secrets: list[dict[str, Any]] | None, state: State | None = None
) -> list[dict[str, Any]]:
    """The ``secrets`` column with every secret in the clear (for display and signing)."""
    return [{**item, "secret": unseal(item["secret"], state)} for item in secrets or ()]


# -- migrations of every row (the CLI's encrypt-secrets, rotate-encryption-key, check) --------


def _rewrite(state: State, change: Callable[[str], str], dry_run: bool = False) -> tuple[int, int]:
    """Apply ``change`` to every stored secret in one transaction: (rows, secrets) changed.
    ``dry_run``: the same work and counts, rolled back."""
    session = state.db.session
    try:
        rows, secrets = _rewrite_rows(session, change)
    except Exception:
        session.rollback()
        raise
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return rows, secrets


def _rewrite_rows(session: Any, change: Callable[[str], str]) -> tuple[int, int]:
    rows = secrets = 0
    for endpoint in session.execute(sa.select(WebhookEndpoint).with_for_update()).scalars():
        items = [{**item, "secret": change(item["secret"])} for item in endpoint.secrets or ()]
        moved = sum(
            a["secret"] != b["secret"] for a, b in zip(items, endpoint.secrets or (), strict=True)
        )
        if moved:
            endpoint.secrets = items
            rows, secrets = rows + 1, secrets + moved
    return rows, secrets


def _need_key(state: State) -> Any:
    if state.fernet is None:
        raise UnreadableSecret(f"Set {KEY} first; {_MAKE_ONE}.")
    return state.fernet


def encrypt_all(state: State, *, dry_run: bool = False) -> tuple[int, int]:
    """Encrypt every secret stored in the clear (those encrypted already stay): counts.
    ``dry_run``: count them, change nothing."""
    _need_key(state)
    return _rewrite(state, lambda value: seal(value, state), dry_run)


def rotate_all(state: State, *, dry_run: bool = False) -> tuple[int, int]:
    """Re-encrypt every secret with the first key of the list; clear ones are encrypted too.
    ``dry_run``: count them, change nothing."""
    fernet = _need_key(state)

    def rotate(value: str) -> str:
        if not sealed(value):
            return seal(value, state)
        unseal(value, state)  # a clear error for a token no key reads
        return PREFIX + str(fernet.rotate(value[len(PREFIX) :].encode()).decode())

    return _rewrite(state, rotate, dry_run)


def unreadable(state: State) -> list[str]:
    """The uuids of endpoints with a secret the configured key cannot decrypt."""
    bad = []
    rows = state.db.session.execute(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    for endpoint in rows.scalars():
        try:
            opened(endpoint.secrets, state)
        except UnreadableSecret:
            bad.append(str(endpoint.uuid))
    state.db.session.rollback()
    return bad
