"""Expectations as data, validated with Great Expectations.

A suite is a list of `Expectation`s, each naming the frame it reads, a Great Expectations
expectation class and its arguments, and the tables its outcomes are about. Being plain data,
the pipeline can declare one Dagster asset check per expectation and table without importing
Great Expectations (slow to import); it is imported only when a suite runs. Great Expectations
stays off the hot path: suites validate small frames of aggregates, never raw rows. An
expectation that cannot be evaluated (a frame without a column it needs) fails rather than
passes.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from quality.outcomes import CheckOutcome, Severity

Where = tuple[str, str, Any]  # (column, comparison, value): a row condition
_COMPARE = {"==": operator.eq, ">=": operator.ge}
EXAMPLES = 3  # failing rows quoted in an outcome's observed text


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite, as data: which frame it reads, what it expects, and which
    tables its outcomes are about. Several checks with one name and target merge into one
    outcome (a rule over several columns)."""

    name: str
    severity: Severity
    description: str
    frame: str
    expectation: str  # a Great Expectations expectation class, e.g. ExpectColumnValuesToBeBetween
    args: Mapping[str, Any]
    targets: tuple[str, ...]  # one outcome per target
    key: str | None = None  # frame column naming each row's target; None: every row is the target
    where: Where | None = None  # the rows the expectation applies to
    show: tuple[str, ...] = ()  # columns quoted in the observed text

    @property
    def columns(self) -> tuple[str, ...]:
        names = ("column", "column_A", "column_B")
        found = tuple(self.args[n] for n in names if n in self.args)
        return found + tuple(self.args.get("column_list", ()))


@dataclass
class _Result:
    check: Expectation
    success: bool
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def run_suite(
    suite: str, checks: Sequence[Expectation], frames: Mapping[str, pd.DataFrame]
) -> list[CheckOutcome]:
    """Validate every check on its frame and fold the results into one outcome per check name
    and target, in the order the checks are listed."""
    results = _validate(checks, frames)
    grouped: dict[tuple[str, str], list[tuple[_Result, pd.DataFrame]]] = {}
    for result in results:
        check = result.check
        frame = frames[check.frame]
        for target in check.targets:
            scope = _scope(frame, check, target)
            grouped.setdefault((check.name, target), []).append(
                (_for_target(result, target), scope)
            )
    return [_outcome(suite, name, target, parts) for (name, target), parts in grouped.items()]


def _scope(frame: pd.DataFrame, check: Expectation, target: str) -> pd.DataFrame:
    if check.key is not None:
        frame = frame[frame[check.key] == target]
    if check.where is not None and not frame.empty:
        column, comparison, value = check.where
        frame = frame[_COMPARE[comparison](frame[column], value)]
    return frame


def _for_target(result: _Result, target: str) -> _Result:
    """The part of a keyed result that concerns one target."""
    key = result.check.key
    if key is None or result.error:
        return result
    unexpected = [row for row in result.unexpected if row.get(key) == target]
    return _Result(result.check, not unexpected, unexpected)


def _outcome(
    suite: str, name: str, target: str, parts: list[tuple[_Result, pd.DataFrame]]
) -> CheckOutcome:
    first = parts[0][0].check
    passed = all(r.success for r, _ in parts)
    seen = [_observed(r, scope) for r, scope in parts if passed or not r.success]
    observed = "; ".join(dict.fromkeys(seen))
    return CheckOutcome(
        suite=suite,
        check=name,
        target=target,
        passed=passed,
        severity=first.severity,
        observed=observed,
        description=first.description,
    )


def _observed(result: _Result, scope: pd.DataFrame) -> str:
    """A short account of what the check saw: the failing rows, else the values checked."""
    check = result.check
    if result.error:
        return f"could not evaluate: {result.error}"
    if not result.success:
        rows = result.unexpected or scope.to_dict("records")
        quoted = ", ".join(_describe(row, check.show) for row in rows[:EXAMPLES])
        more = f" and {len(rows) - EXAMPLES} more" if len(rows) > EXAMPLES else ""
        return f"{len(rows)} of {len(scope)} rows fail: {quoted}{more}"
    if check.key is not None or len(scope) <= 1:
        return ", ".join(_describe(row, check.show) for row in scope.to_dict("records")) or (
            "no rows"
        )
    column = check.args.get("column")
    if column and ("max_value" in check.args or "min_value" in check.args):
        values = scope[column].dropna()
        if values.empty:
            return f"{column}: no values in {len(scope)} rows"
        return f"{column}: {_text(values.min())} to {_text(values.max())} over {len(scope)} rows"
    return f"{len(scope)} rows pass"


def _describe(row: Mapping[str, Any], show: tuple[str, ...]) -> str:
    return " ".join(f"{c}={_text(row.get(c))}" for c in show if c in row) or str(dict(row))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _validate(checks: Sequence[Expectation], frames: Mapping[str, pd.DataFrame]) -> list[_Result]:
    """One Great Expectations validation per frame, each check an expectation of its suite."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,  # nothing leaves the machine
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    source = context.data_sources.add_pandas("frames")
    results: list[_Result] = []
    for name in dict.fromkeys(c.frame for c in checks):
        frame_checks = [c for c in checks if c.frame == name]
        frame = frames[name]
        batch = (
            source.add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        # A suite holds each distinct expectation once: checks that share one share its result.
        shared: dict[str, list[Expectation]] = {}
        for check in frame_checks:
            signature = repr((check.expectation, sorted(check.args.items()), check.where))
            shared.setdefault(signature, []).append(check)
        groups = list(shared.values())
        suite = gx.ExpectationSuite(name=name)
        for index, (check, *_) in enumerate(groups):
            condition = {"row_condition": _condition(check.where)} if check.where else {}
            suite.add_expectation(
                getattr(gxe, check.expectation)(**check.args, **condition, meta={"group": index})
            )
        keys = sorted({c for c in frame_checks for c in (c.key, *c.show) if c} & set(frame))
        validation = batch.validate(
            suite,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": keys},
        )
        for item in validation.results:
            results += [_result(c, item) for c in groups[item.expectation_config.meta["group"]]]
    order = {id(c): i for i, c in enumerate(checks)}
    return sorted(results, key=lambda r: order[id(r.check)])


def _condition(where: Where) -> Any:
    from great_expectations.expectations.row_conditions import Column

    column, comparison, value = where
    return _COMPARE[comparison](Column(column), value)


def _result(check: Expectation, item: Any) -> _Result:
    info = item.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message") or "error").splitlines()[0]
        return _Result(check, False, error=message)
    unexpected = list(item.result.get("unexpected_index_list") or [])
    return _Result(check, bool(item.success), unexpected)
