"""Flask-WTF forms of the admin pages.

Every form that is posted derives from :class:`AdminForm`, which keeps CSRF on even when
the app sets ``WTF_CSRF_ENABLED = False`` or never set up ``CSRFProtect``: the admin
changes endpoints on Stripe, so a forged POST must never get through. The filter forms
of the list pages are plain WTForms forms read from the query string (GET, no CSRF).
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Form,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

try:
    from wtforms import SelectChoice
except ImportError:  # WTForms 3.2, the newest on Python 3.10: options are (value, label) tuples
    SelectChoice = None

from .. import event_types
from ..events import ACCOUNT_PATH
from ..outcomes import DUPLICATE, EVENT_STATUSES, FAILED, PROCESSED, QUEUED, REJECTED, SHADOW, TWIN
from ..utils import parse_duration

DELIVERY_OUTCOMES = (REJECTED, FAILED, PROCESSED, DUPLICATE, QUEUED, TWIN, SHADOW)


def choices(*pairs: tuple[str, str] | str) -> list[Any]:
    """Options from ``(value, label)`` pairs or bare values: ``SelectChoice`` objects where
    WTForms has them (3.3 deprecates tuples), ``(value, label)`` tuples on WTForms 3.2."""
    options = [p if isinstance(p, tuple) else (p, p) for p in pairs]
    if SelectChoice is None:
        return options
    return [SelectChoice(*p) for p in options]


def mode_choices() -> list[Any]:
    return choices(("test", "Test mode"), ("live", "Live mode"))


class AdminForm(FlaskForm):
    """A form of the admin: CSRF always on, whatever ``WTF_CSRF_ENABLED`` says."""

    class Meta(FlaskForm.Meta):
        csrf = True


def event_choices(*, thin: bool | None = False) -> list[Any]:
    """``*`` and every event type of the installed stripe-python: snapshot types, thin
    types (``thin=True``) or both (``thin=None``, thin ones last)."""
    names: list[str] = []
    if thin is not True:
        names += event_types.all_event_types()
    if thin is not False:
        names += event_types.thin_event_types()
    return choices(("*", "* (every event)"), *names)


class EventsField(SelectMultipleField):
    """Enabled events: ``*`` or exact types from stripe-python's list."""

    def __init__(self, label: str = "Enabled events", **kwargs: Any) -> None:
        super().__init__(
            label,
            choices=event_choices(),
            validators=[DataRequired("Choose at least one event type, or *.")],
            validate_choice=False,  # endpoints.expand_events says what is wrong, with a hint
            render_kw={"size": 12, "data-picker": "event-types"},  # admin.js
            **kwargs,
        )


class MetadataField(TextAreaField):
    """``KEY=VALUE``, one pair a line; ``data`` is the dict."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        self.raw = valuelist[0] if valuelist else ""
        self.data: dict[str, str] = {}
        for number, line in enumerate(self.raw.splitlines(), 1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"Line {number}: write KEY=VALUE.")
            self.data[key.strip()] = value.strip()

    def _value(self) -> str:
        if self.raw_data:
            return str(self.raw_data[0])
        return "\n".join(f"{k}={v}" for k, v in (self.data or {}).items())


class CreateEndpointForm(AdminForm):
    account = SelectField("Account", choices=choices(("", "Default account")))
    mode = RadioField("Mode", choices=mode_choices(), default="test")
    base_url = URLField(
        "Base URL",
        description="The public address of this app; the webhook path is added to it.",
    )
    events = EventsField(default=["*"])
    api_version = StringField(
        "API version",
        validators=[Optional(), Length(max=64)],
        description="Leave empty for STRIPE_API_VERSION, else the version of stripe-python.",
    )
    description = StringField("Description", validators=[Optional(), Length(max=5000)])
    metadata = MetadataField("Metadata", description="KEY=VALUE, one pair a line.")
    connect = BooleanField("Connect: receive events from connected accounts")
    payload = RadioField(
        "Payload",
        choices=choices(
            ("snapshot", "Snapshot events (a webhook endpoint)"),
            ("thin", "Thin events (a v2 event destination: v1.*, v2.* types)"),
        ),
        default="snapshot",
    )
    submit = SubmitField("Create endpoint on Stripe")


class EventsForm(AdminForm):
    events = EventsField()
    submit = SubmitField("Save events")


class StatusForm(AdminForm):
    """Enable or disable; the button pressed says which."""

    enable = SubmitField("Enable")
    disable = SubmitField("Disable")


class SecretForm(AdminForm):
    secret = PasswordField(  # never echoed back into the page
        "New signing secret",
        validators=[DataRequired("Paste the new signing secret (whsec_...).")],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
        description="Stripe Dashboard → Webhooks → your endpoint → Signing secret.",
    )
    keep_old_for = StringField(
        "Keep the old secret valid for",
        default="24h",
        description="30s, 5m, 2h or 3d; 0 drops the old secret at once.",
    )
    submit = SubmitField("Rotate secret")

    def validate_keep_old_for(self, field: StringField) -> None:
        try:
            parse_duration(field.data or "0")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class DeleteForm(AdminForm):
    keep_remote = BooleanField("Keep the endpoint on Stripe (only forget it here)")
    submit = SubmitField("Delete endpoint")


class ProcessForm(AdminForm):
    submit = SubmitField("Process again")


class ProcessFailedForm(AdminForm):
    """The confirmation of a bulk "process again"; the filter goes along in the query
    string."""

    submit = SubmitField("Process them again")


class EventFilterForm(Form):
    type = StringField("Type", validators=[Optional(), Length(max=255)])
    object = StringField(
        "Object",
        validators=[Optional(), Length(max=255)],
        render_kw={"placeholder": "sub_..., cus_...", "spellcheck": "false"},
    )
    status = SelectField("Status", choices=choices(("", "any"), *EVENT_STATUSES), default="")
    mode = SelectField("Mode", choices=[*choices(("", "any")), *mode_choices()], default="")
    account = StringField(
        "Account",
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[
            Optional(),
            Length(max=255),
            Regexp(rf"^{ACCOUNT_PATH.pattern}$", message="Not a Stripe account id (acct_...)."),
        ],
        render_kw={"placeholder": "acct_..."},
    )


class DeliveryFilterForm(Form):
    outcome = SelectField("Outcome", choices=choices(("", "any"), *DELIVERY_OUTCOMES), default="")
    endpoint_uuid = StringField("Endpoint uuid", validators=[Optional(), Length(max=64)])
