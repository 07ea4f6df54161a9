"""The api's contract: every query and every answer as a pydantic model.

These models are the one source: APIFlask validates each request's query against its
model (app.py) and generates /openapi.json from the same models, and the raw /candles
fast path validates with the same model. A rule OpenAPI cannot state (``from`` not after
``to``) is the model's own validator, so it is still stated once.

Errors name the parameter and say why (``problem``); unknown and repeated parameters are
rejected like any other bad value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, ValidationError, create_model, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import MultiDict

from gostream.api.queries import INTERVALS
from gostream.common.trade import SYMBOL_PATTERN

MAX_EPOCH_S = 4_102_444_800  # 2100-01-01, as for trades
MAX_CANDLES = 5000
DEFAULT_CANDLES = 500
MAX_TRADES = 1000
DEFAULT_TRADES = 100
EVENT_ID_PATTERN = r"^[0-9]{1,19}-(-1|[0-9]{1,19})$"
_DIGITS = re.compile(r"[0-9]{1,19}")


class BadRequest(ValueError):
    """A parameter the api cannot use; the message says which and why."""


def _digits(value: Any) -> Any:
    """Query values are text: only plain decimal digits are a number (pydantic alone would
    also take ' 5', '+5', '5.0' and '5_0', which the document does not promise)."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise PydanticCustomError("whole_number", "{value} is not a whole number", {"value": repr(value[:20])})
    return value


def number(low: int, high: int, description: str = "", optional: bool = False) -> Any:
    """A whole number in low..high (optional: may be absent; null is not a value a query
    string can carry, so the document does not offer it). The bounds sit on the int itself
    so the document shows them as its minimum and maximum."""
    kind = Annotated[int, Field(ge=low, le=high)]
    return Annotated[kind | SkipJsonSchema[None] if optional else kind, BeforeValidator(_digits),
                     Field(description=description or None)]


EpochS = number(0, MAX_EPOCH_S)
Epoch = number(0, MAX_EPOCH_S, optional=True)
Symbol = Annotated[Annotated[str, Field(pattern=SYMBOL_PATTERN.pattern)] | SkipJsonSchema[None],
                   Field(examples=["BTC-USDT"])]
_SYMBOL = "OKX instrument id; without it the api's DEFAULT_SYMBOL (BTC-USDT unless set)."
IntervalName = Literal[tuple(INTERVALS)]  # type: ignore[valid-type]


def optional(description: str, alias: str | None = None) -> Any:
    """An optional parameter without a default in the document (pydantic would write null)."""
    return Field(None, alias=alias, description=description, json_schema_extra=lambda schema: schema.pop("default", None))


MODELS: dict[str, type[BaseModel]] = {}  # query models by name, to name what they expect in errors


class Query(BaseModel):
    """A query string: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        MODELS[cls.__name__] = cls


class Ranged(Query):
    """``from`` and ``to`` (fields start, end of the subclass) in epoch seconds, ``from``
    not after ``to``: the one rule OpenAPI cannot state."""

    @model_validator(mode="after")
    def _ordered(self):
        if self.start is not None and self.end is not None and self.start > self.end:
            raise PydanticCustomError("range", "from ({start}) is after to ({end})",
                                      {"start": self.start, "end": self.end})
        return self


CandleLimit = number(1, MAX_CANDLES, "Most candles to return (the latest ones).")
TradeLimit = number(1, MAX_TRADES, "Most trades to return.")
TradeTime = number(0, MAX_EPOCH_S * 1000, optional=True)


class CandlesQuery(Ranged):
    symbol: Symbol = optional(_SYMBOL)
    interval: IntervalName = Field("1m", description="Candle length; buckets are aligned to the UTC calendar.")
    start: Epoch = optional("Start, epoch seconds (inclusive, whole bucket).", "from")
    end: Epoch = optional("End, epoch seconds (inclusive, whole bucket); not before `from`.", "to")
    limit: CandleLimit = DEFAULT_CANDLES


class NoQuery(Query):
    """No parameters at all."""


class TradesQuery(Query):
    symbol: Symbol = optional(_SYMBOL)
    limit: TradeLimit = DEFAULT_TRADES


class StatsQuery(Query):
    symbol: Symbol = optional(_SYMBOL)


class CompletenessQuery(Ranged):
    symbol: Symbol = optional(_SYMBOL)
    start: Epoch = optional("Start, epoch seconds (inclusive).", "from")
    end: Epoch = optional("End, epoch seconds (exclusive); not before `from`.", "to")


class StreamQuery(Query):
    symbol: Symbol = optional(_SYMBOL)
    interval: IntervalName = Field("1m", description="Candle length; buckets are aligned to the UTC calendar.")
    since: Epoch = optional("Epoch seconds: the client's newest bar (whole bucket).")
    trades_since: TradeTime = optional("Epoch milliseconds: the client's newest trade.")
    last_event_id: Annotated[str, Field(pattern=EVENT_ID_PATTERN)] | SkipJsonSchema[None] = optional(
        "The last event id the client got (`<µs>-<trade id>`), as the `Last-Event-ID` header a browser sends on "
        "its own reconnects: resume from there.")


# -- answers -------------------------------------------------------------------
class Candle(BaseModel):
    time: int = Field(description="Bucket start, epoch seconds (UTC)")
    open: float
    high: float
    low: float
    close: float
    volume: float = Field(description="Sum of trade sizes (base currency)")


class Trade(BaseModel):
    id: int = Field(description="OKX trade id")
    time_ms: int = Field(description="Exchange time, epoch milliseconds")
    price: float
    size: float
    side: Literal["buy", "sell"] = Field(description="Taker side")


class SymbolRow(BaseModel):
    model_config = ConfigDict(title="Symbol")
    symbol: str
    last: float = Field(description="Close of the latest 1m candle")
    time: int = Field(description="That candle's start, epoch seconds")
    change_pct_24h: float | None = Field(None, description="Change over the 1m candles of the last 24 h, percent")
    volume_24h: float | None = Field(None, description="Volume over the 1m candles of the last 24 h")
    inst_type: str | None = Field(None, description="OKX instrument type (null: no metadata stored)")
    tick_size: str | None = Field(None, description="OKX tick size, as OKX writes it")
    lot_size: str | None = Field(None, description="OKX lot size, as OKX writes it")
    price_precision: int | None = Field(None, description="Decimals of the tick size")
    size_precision: int | None = Field(None, description="Decimals of the lot size")


class Stats(BaseModel):
    symbol: str
    time_ms: int | None = Field(description="Latest trade, epoch milliseconds")
    last: float | None
    open: float | None = Field(description="First price of the 24 h window")
    high: float | None
    low: float | None
    volume: float | None
    trades: int
    change: float | None
    change_pct: float | None


class Hole(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_id: int
    last_id: int
    missing: int = Field(ge=1)
    after_time: float = Field(description="Time of the stored row before it, epoch seconds")
    before_time: float = Field(description="Time of the stored row after it, epoch seconds")
    state: Literal["found", "open", "closed", "unrecoverable"]
    attempts: int = Field(ge=0)


class Ledger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    open: int = Field(ge=0)
    unrecoverable: int = Field(ge=0)
    unrecoverable_missing: int = Field(ge=0)


class Completeness(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    symbol: str
    start: int | None = Field(alias="from", description="As asked, epoch seconds")
    end: int | None = Field(alias="to", description="As asked, epoch seconds")
    first_id: int = Field(description="Lowest id a stored row covers (0: no trades)")
    last_id: int = Field(description="Highest stored id (0: no trades)")
    expected: int = Field(ge=0, description="last_id - first_id + 1")
    stored: int = Field(ge=0, description="expected - missing")
    missing: int = Field(ge=0, description="Ids in holes")
    complete: bool = Field(description="missing == 0")
    percent: float = Field(ge=0, le=100)
    holes: list[Hole]
    holes_truncated: bool
    ledger: Ledger


class Error(BaseModel):
    error: str = Field(description="Which parameter is wrong and why, or what is unavailable")


def _event(name: str, data: dict | None, description: str) -> type[BaseModel]:
    """One kind of /stream event as OpenAPI (before 3.2) describes an event stream: an
    object `{event, data, id?, retry?}`, its data JSON of the schema given."""
    payload = {"contentMediaType": "application/json", **({"contentSchema": data} if data else {})}
    fields = {
        "event": (Literal[name], ...),
        "data": (Annotated[str, Field(json_schema_extra=payload)], ...),
        "id": (Annotated[str, Field(pattern=EVENT_ID_PATTERN)] | SkipJsonSchema[None], optional("The stream's position")),
        "retry": (int | SkipJsonSchema[None], optional("Reconnect after this many ms")),
    }
    return create_model(f"{name.title()}Event", __doc__=description, **fields)


_TRADES = {"type": "array", "items": Trade.model_json_schema()}
_EVENTS = (
    _event("hello", {"type": "object", "required": ["symbol", "interval", "poll_ms"]}, "The stream's symbol and interval"),
    _event("candle", Candle.model_json_schema(), "The forming bucket, or a closed one's final values"),
    _event("trades", _TRADES, "New trades, oldest first; carries the stream position as its id"),
    _event("late", _TRADES, "Trades written below the position (a filled hole)"),
    _event("stats", Stats.model_json_schema(), "The symbol's /stats, when trades changed them"),
    _event("tickers", None, "Every symbol's last price and 24 h change (the changed ones after the first)"),
    _event("status", {"type": "object", "required": ["ok"]}, "QuestDB went away or came back"),
    _event("reload", {"type": "object", "required": ["reason"]}, "Load /candles again and reopen the stream"),
)


class StreamEvent(RootModel[Union[_EVENTS]]):  # noqa: UP007 (a union of classes made at run time)
    """One event of /stream"""


class Alive(BaseModel):
    alive: bool


class Ready(BaseModel):
    ready: bool
    problems: list[str] = Field([], description="What is wrong (not ready)")


class Index(BaseModel):
    service: str
    openapi: str
    endpoints: list[str]


# -- parsing ---------------------------------------------------------------------
def query_dict(args: MultiDict) -> dict[str, str]:
    """The query string as one value per name; a name given twice is an error (a model
    would otherwise see only one of them)."""
    out = {}
    for name, values in args.lists():
        if len(values) > 1:
            raise BadRequest(f"{name}: given {len(values)} times, expected once")
        out[name] = values[0]
    return out


def problem(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first error of a model's validation as one sentence naming the parameter."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]) if error["loc"] else "parameters"  # [1:]: the member of an optional's union
    kind = error["type"]
    if kind == "extra_forbidden":
        model = model or MODELS.get(exc.title)
        names = [field.alias or key for key, field in model.model_fields.items()] if model else []
        return f"unknown parameter {name!r} (expected: {', '.join(names) or 'none'})"
    if kind == "missing":
        return f"{name}: required"
    if kind in ("range", "whole_number") or not error["loc"]:
        return f"{name}: {error['msg']}" if error["loc"] else error["msg"]
    shown = error.get("input")
    shown = repr(shown[:40]) if isinstance(shown, str) else repr(shown)
    return f"{name}: {shown} is not valid: {error['msg']}"


def parse(model: type[Query], args: MultiDict) -> Any:
    """A request's query as ``model``, or BadRequest saying which parameter and why."""
    try:
        return model.model_validate(query_dict(args))
    except ValidationError as exc:
        raise BadRequest(problem(exc, model)) from None
