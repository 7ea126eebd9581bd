"""The trade-event batch of POST /validate (targets/CONTRACT.md), validated with Django forms.

A ``forms.Form`` per event, with Django's fields and ``django.core.validators``. Django's
fields read form data, where every value is a string, so they coerce: ``IntegerField``
takes ``"100"`` and ``100.0``, ``FloatField`` takes ``true``, ``CharField`` turns ``5``
into ``"5"`` and strips spaces. A JSON API must refuse those, so each field here first
checks the JSON type it was given, then lets Django do the rest. The body and the
``events`` array around the forms are checked by hand.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import BaseValidator, MaxLengthValidator, MinLengthValidator, RegexValidator

MAX_EVENTS = 1_000
# RFC 3339 date-time with an offset; Django's parse_datetime then checks it names a real instant.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)

Errors = list[dict[str, Any]]


class GreaterThanValidator(BaseValidator):
    """MinValueValidator's strict twin: the value must be above ``limit_value``."""

    message = "Ensure this value is greater than %(limit_value)s."
    code = "greater_than"

    def compare(self, a: Any, b: Any) -> bool:
        return bool(a <= b)


class TextField(forms.Field):
    """A JSON string, kept exactly as sent (``CharField`` would strip it and stringify numbers)."""

    def to_python(self, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValidationError("Enter a string.", code="invalid")
        return value


class JSONIntegerField(forms.IntegerField):
    """A JSON integer: not ``"100"``, ``100.0`` or ``true``."""

    def to_python(self, value: Any) -> Any:
        if value is not None and type(value) is not int:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class JSONNumberField(forms.FloatField):
    """A JSON number that is a finite double: not ``"3"``, ``true`` or a 400-digit integer."""

    def to_python(self, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        try:
            return super().to_python(value)
        except OverflowError:  # float() of an integer beyond the double range
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class RFC3339DateTimeField(forms.DateTimeField):
    """An RFC 3339 date-time string with an offset (DateTimeField alone also takes naive
    times, dates alone and its input formats)."""

    def to_python(self, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and _RFC3339.fullmatch(value)):
            raise ValidationError("Enter an RFC 3339 date-time with an offset.", code="invalid")
        return super().to_python(value)


class TradeEventForm(forms.Form):
    id = TextField(validators=[MinLengthValidator(1), MaxLengthValidator(64)])
    symbol = TextField(validators=[RegexValidator(r"\A[A-Z]{1,12}\Z", "Enter 1 to 12 capital letters A-Z.")])
    side = forms.ChoiceField(choices=[("buy", "buy"), ("sell", "sell")])
    quantity = JSONIntegerField(min_value=1)
    price = JSONNumberField(validators=[GreaterThanValidator(0)])
    ts = RFC3339DateTimeField()


def _event_errors(index: int, event: object) -> Errors:
    if not isinstance(event, dict):
        return [{"loc": ["events", index], "msg": "Enter a JSON object."}]
    form = TradeEventForm(data=event)
    if form.is_valid():
        return []
    return [
        {"loc": ["events", index, field], "msg": error["message"]}
        for field, errors in form.errors.get_json_data().items()
        for error in errors
    ]


def validate_batch(body: object) -> tuple[dict[str, Any], int]:
    """200 ``{"valid": K}``, or 422 with the contract's ``errors``, for a parsed JSON body."""
    if not isinstance(body, dict):
        return {"errors": [{"loc": [], "msg": "Enter a JSON object."}]}, 422
    events = body.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        msg = "This field is required." if events is None else f"Enter a list of 1 to {MAX_EVENTS} events."
        return {"errors": [{"loc": ["events"], "msg": msg}]}, 422
    errors = [error for index, event in enumerate(events) for error in _event_errors(index, event)]
    if errors:
        return {"errors": errors}, 422
    return {"valid": len(events)}, 200
