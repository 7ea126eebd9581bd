"""The trade-event batch of POST /validate (targets/CONTRACT.md) as a pydantic 2 model.

This file is identical in every target that validates with pydantic (tests check it).
Every field is strict: pydantic's lax mode would turn ``"100"`` or ``100.0`` into a
quantity of 100 and ``true`` into a price of 1, which the contract refuses.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, Strict, ValidationError

MAX_EVENTS = 1_000
# RFC 3339 date-time with an offset; pydantic then checks it names a real instant.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time string with an offset, e.g. 2026-11-24T09:30:00Z")
    return value


class TradeEvent(BaseModel):
    id: Annotated[str, Strict(), Field(min_length=1, max_length=64)]
    symbol: Annotated[str, Strict(), Field(pattern=r"^[A-Z]{1,12}$")]
    side: Literal["buy", "sell"]
    quantity: Annotated[int, Strict(), Field(ge=1)]
    price: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
    ts: Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


class TradeBatch(BaseModel):
    events: Annotated[list[TradeEvent], Field(min_length=1, max_length=MAX_EVENTS)]


def error_entries(errors: list[Any], drop: int = 0) -> list[dict[str, Any]]:
    """The contract's ``errors`` list from pydantic's (``ValidationError.errors()``).

    ``drop``: how many leading ``loc`` items to leave out (FastAPI puts ``"body"`` first).
    """
    return [{"loc": list(error["loc"][drop:]), "msg": error["msg"]} for error in errors]


def validate_batch(body: object) -> tuple[dict[str, Any], int]:
    """200 ``{"valid": K}``, or 422 with the contract's ``errors``, for a parsed JSON body."""
    try:
        batch = TradeBatch.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return {"errors": error_entries(errors)}, 422
    return {"valid": len(batch.events)}, 200
