"""Request parsing: every malformed, oversized or out-of-range input becomes a clear 4xx."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any

from starlette.requests import Request

MAX_BODY_BYTES = 16 * 1024
MAX_TEXT = 200
INT64_MAX = 2**63 - 1
MAX_DEPTH = 32  # arrays and objects inside one another; the body itself is depth 1
# Digits of one integer literal. Past it the body is malformed (400); a shorter integer outside
# a field's range is out_of_range (422). An int64 has 19 digits: the margin keeps 10**30 a
# range error, and Python's own cap on int(str), 4,300 digits, is never reached.
MAX_INT_DIGITS = 40
MAX_WEIGHT, MAX_WEIGHTS = 1_000_000, 100  # a host's split weight; hosts named in one split
ID = f"[A-Za-z0-9_-]{{1,{MAX_TEXT}}}"  # what ids are made of, in paths and query strings
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # only a lone one: json joins a pair


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def raw_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's bytes; 413 past `limit`, whatever Content-Length claims."""
    too_large = BadRequest(413, "body_too_large", f"request bodies are limited to {limit}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise too_large
    return bytes(raw)


async def json_body(request: Request) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and its raw bytes; 413 past MAX_BODY_BYTES, 400 if not JSON."""
    raw = await raw_body(request)
    if not raw:
        return {}, b""
    body = _load(raw)
    if not isinstance(body, dict):
        raise BadRequest(400, "malformed_json", "the body must be a JSON object")
    return body, raw


def _load(raw: bytes) -> Any:
    """Strict JSON: no NaN or Infinity, integers of at most MAX_INT_DIGITS digits, at most
    MAX_DEPTH levels, and no lone surrogate (a "\\ud800" escape) in any key or string."""
    try:
        value = json.loads(raw, parse_int=_integer, parse_constant=_constant)
    except RecursionError as exc:  # far deeper than MAX_DEPTH: the parser gave up first
        raise _malformed(f"the body nests more than {MAX_DEPTH} levels deep") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(f"the body is not JSON: {exc}") from exc
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _malformed("the body holds a lone surrogate, which is not Unicode text")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise _malformed(f"the body nests more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                pending += [(key, depth) for key in item]
                item = item.values()
            pending += [(inner, depth + 1) for inner in item]
    return value


def _integer(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _malformed(f"the body has an integer of more than {MAX_INT_DIGITS} digits")
    return int(literal)


def _constant(literal: str) -> Any:
    raise _malformed(f"the body is not JSON: {literal} is not a JSON number")


def _malformed(message: str) -> BadRequest:
    return BadRequest(400, "malformed_json", message)


def integer(body: dict, name: str, low: int = 1, high: int = INT64_MAX) -> int:
    """An integer field. JSON has one number type, and JSON Schema counts `70.0` an integer:
    a number with an integral value is that integer (`70.0` is 70; `70.5` is invalid), and
    then must lie within `low` to `high` (never past the int64 range) like any other."""
    value = body.get(name)
    if value is None:
        raise BadRequest(422, "missing_field", f"{name} is required")
    if isinstance(value, float) and value.is_integer():  # finite: NaN and Infinity are 400s
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(422, "invalid_field", f"{name} must be an integer")
    if not low <= value <= high:
        raise BadRequest(422, "out_of_range", f"{name} must be {low:,} to {high:,}")
    return value


def text(
    body: dict, name: str, default: str | None = None, choices: frozenset[str] | None = None
) -> str:
    value = body.get(name, default)
    if value is None:
        raise BadRequest(422, "missing_field", f"{name} is required")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise BadRequest(422, "invalid_field", f"{name} must be a string of 1 to {MAX_TEXT} chars")
    if choices is not None and value not in choices:
        raise BadRequest(422, "invalid_field", f"{name} must be one of {sorted(choices)}")
    return value


def optional_text(body: dict, name: str) -> str | None:
    return None if body.get(name) is None else text(body, name)


def flag(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(422, "invalid_field", f"{name} must be true or false")
    return value


def weights(body: dict, name: str) -> dict[str, int]:
    value = body.get(name)
    if not isinstance(value, dict) or not value:
        raise BadRequest(422, "invalid_field", f"{name} must map creator ids to weights")
    if len(value) > MAX_WEIGHTS:
        raise BadRequest(422, "invalid_field", f"{name} names at most {MAX_WEIGHTS} hosts")
    return {str(k): integer(value, k, 1, MAX_WEIGHT) for k in value}


def idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if not key or len(key) > MAX_TEXT:
        raise BadRequest(
            400, "missing_idempotency_key", "send an Idempotency-Key header of 1 to 200 chars"
        )
    return key


def request_hash(request: Request, raw: bytes) -> str:
    """What the idempotency key stands for: the route and the body, canonicalised."""
    canonical = json.dumps(_load(raw) if raw else {}, sort_keys=True)  # no body = {}
    return hashlib.sha256(f"{request.method} {request.url.path} {canonical}".encode()).hexdigest()


PAGE_SIZE, MAX_PAGE_SIZE = 50, 100


def page(request: Request) -> tuple[int, str | None]:
    """`?limit=` (1 to MAX_PAGE_SIZE, default PAGE_SIZE) and `?after=` (an id) of a list."""
    raw_limit = request.query_params.get("limit", str(PAGE_SIZE))
    limit = _query_integer(raw_limit)
    if limit is None or not 1 <= limit <= MAX_PAGE_SIZE:
        raise BadRequest(422, "out_of_range", f"limit must be 1 to {MAX_PAGE_SIZE}")
    after = request.query_params.get("after")
    if after is not None and not re.fullmatch(ID, after):
        raise BadRequest(422, "invalid_field", f"after must be an id of 1 to {MAX_TEXT} chars")
    return limit, after


# A JSON number in a query string: ASCII digits only (str.isdigit also takes "²" and "٣").
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def _query_integer(raw: str) -> int | None:
    """The integer a query value spells (`5`, `5.0`, `5e0`), or None: not a number, not
    integral, or beyond the int64 range (compared as a Decimal, never expanded)."""
    if len(raw) > MAX_INT_DIGITS or _NUMBER.fullmatch(raw) is None:
        return None
    number = Decimal(raw)
    if not -INT64_MAX <= number <= INT64_MAX or number != number.to_integral_value():
        return None
    return int(number)
