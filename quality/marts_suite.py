"""The marts suite: the marts about to be published, and platform_daily's totals against the
raw tables.

Which money may be negative follows docs/metrics.md: gross volume and every cost are sums of
non-negative amounts, so a negative value is broken data; platform revenue, creator earnings
and contribution of a day, a session or a creator's week fall below zero when refunds (dated
on the refund's day) take back more than that period earned, so they are left unbounded. Ratios
are checked against the range their definition guarantees: failure rate, earning hour ratio,
earning creator share and the median earning hour ratio always lie in [0, 1]; take rate is at
most 1 and lies in [0, 1] whenever platform revenue is not negative; the earnings Gini and the
top 1% share lie in [0, 1] in weeks where no active creator's earnings are negative; a
creator's top-session share lies in [0, 1] in weeks without a refund of their orders (a refund
can make a session's or the week's earnings negative); contribution margin is unbounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from models.cost_model import PICO, CostModel, load_cost_model
from quality.expectations import Expectation, Where, run_suite
from quality.outcomes import MARTS_SUITE, CheckOutcome

GRAINS: dict[str, tuple[str, ...]] = {
    "platform_daily": ("day",),
    "creator_weekly": ("week", "creator_id"),
    "platform_weekly": ("week",),
    "session_economics": ("session_id",),
}
# Amounts that are sums of non-negative amounts (see the module docstring for the others).
NON_NEGATIVE: dict[str, tuple[str, ...]] = {
    "platform_daily": (
        "gross_volume",
        "infra_cost",
        "transaction_cost",
        "live_minutes",
        "viewer_minutes",
        "sessions",
        "transactions",
        "failed_transactions",
    ),
    "session_economics": ("gross_volume", "infra_cost", "live_minutes", "viewer_minutes"),
    "creator_weekly": (
        "infra_cost",
        "live_minutes",
        "live_hours",
        "earning_hours",
        "sessions",
        "sessions_with_earnings",
        "earning_events",
    ),
    "platform_weekly": ("active_creators", "earning_creators"),
}
# Cost and fee parts of platform_daily beyond the contract's columns, checked when published.
DAILY_PARTS = (
    "publish_cost",
    "delivery_cost",
    "transcode_cost",
    "relay_cost",
    "egress_cost",
    "recording_cost",
    "fixed_cost",
    "payment_fees",
    "store_fees",
    "per_transaction_fees",
    "refunded_payment_fees",
    "gift_platform_fees",
    "order_commissions",
    "refunded_commissions",
)
# (mart, ratio, row condition under which its definition keeps it in [0, 1])
UNIT_RATIOS: tuple[tuple[str, str, Where | None], ...] = (
    ("platform_daily", "failure_rate", None),
    ("platform_daily", "take_rate", ("platform_revenue", ">=", 0)),
    ("creator_weekly", "earning_hour_ratio", None),
    ("creator_weekly", "top_session_share", ("without_refunds", "==", True)),
    ("platform_weekly", "earning_creator_share", None),
    ("platform_weekly", "median_earning_hour_ratio", None),
    ("platform_weekly", "earnings_gini", ("earnings_all_non_negative", "==", True)),
    ("platform_weekly", "top1pct_earnings_share", ("earnings_all_non_negative", "==", True)),
)
# (mart, smaller, larger): a part never exceeds its whole
ORDERED_COUNTS: tuple[tuple[str, str, str], ...] = (
    ("creator_weekly", "earning_hours", "live_hours"),
    ("creator_weekly", "sessions_with_earnings", "sessions"),
    ("platform_weekly", "earning_creators", "active_creators"),
)
# platform_daily totals reconciled with the raw tables: (metric, published parts it sums)
RECONCILED: tuple[tuple[str, int], ...] = (
    ("transactions", 0),
    ("failed_transactions", 0),
    ("gross_volume", 1),
    ("platform_revenue", 3),
    ("creator_earnings", 1),
)
PUBLISHED_QUANTUM = Decimal("0.000000001")  # marts publish money with nine decimal places


def check_marts(
    marts: Mapping[str, pa.Table],
    client: Client,
    cost_model: CostModel | None = None,
    recomputed_days: Iterable[date] | None = None,
) -> list[CheckOutcome]:
    """The marts suite: grain, signs and ranges of every mart present, and platform_daily's
    totals against the raw tables (converted with `cost_model`'s fx, the default model when
    None: pass the model the marts were built with).

    The totals are compared over `recomputed_days` (all days when None): a day kept from an
    earlier publish was reconciled then, and may be stale now by design, when a late event
    has noted it dirty for its own recompute."""
    frames = {name: table.to_pandas() for name, table in marts.items()}
    frames = {**frames, **_derived_frames(frames, client)}
    checks = mart_checks(frames)
    if "platform_daily" in frames:
        model = cost_model or load_cost_model()
        daily = frames["platform_daily"]
        if recomputed_days is not None:
            daily = daily[daily["day"].isin(set(recomputed_days))]
        frames["reconciliation"] = reconciliation_frame(daily, client, model)
        checks += _reconciliation_checks()
    return run_suite(MARTS_SUITE, checks, frames)


def _derived_frames(frames: dict[str, pd.DataFrame], client: Client) -> dict[str, pd.DataFrame]:
    """Columns some checks need beyond the published ones."""
    derived: dict[str, pd.DataFrame] = {}
    creators = frames.get("creator_weekly")
    if creators is not None:
        refunded = {(c, w) for c, w in client.query(REFUND_WEEKS_SQL).result_rows}
        creators = creators.copy()
        creators["without_refunds"] = [
            (c, w) not in refunded
            for c, w in zip(creators["creator_id"], creators["week"], strict=True)
        ]
        derived["creator_weekly"] = creators
    daily = frames.get("platform_daily")
    if daily is not None and {"contribution", "platform_revenue"} <= set(daily.columns):
        daily = daily.copy()
        daily["contribution_expected"] = (
            daily["platform_revenue"] - daily["transaction_cost"] - daily["infra_cost"]
        )
        derived["platform_daily"] = daily
    weekly, creators = frames.get("platform_weekly"), frames.get("creator_weekly")
    if weekly is not None:
        weekly = weekly.copy()
        negative: set = set()
        if creators is not None and not creators.empty:
            active = creators[creators["live_hours"] > 0]
            negative = set(active.loc[active["earnings"] < 0, "week"])
        # Without creator_weekly the precondition is unknown, so those ratios go unchecked.
        weekly["earnings_all_non_negative"] = [
            creators is not None and w not in negative for w in weekly["week"]
        ]
        derived["platform_weekly"] = weekly
    return derived


def mart_checks(frames: Mapping[str, pd.DataFrame]) -> list[Expectation]:
    """The checks for the marts present; optional columns are checked when published."""
    checks: list[Expectation] = []
    for mart, grain in GRAINS.items():
        if mart not in frames:
            continue
        columns = set(frames[mart].columns)
        checks += _grain_checks(mart, grain)
        extra = DAILY_PARTS if mart == "platform_daily" else ()
        for column in NON_NEGATIVE[mart] + tuple(c for c in extra if c in columns):
            checks.append(
                Expectation(
                    "amounts_non_negative",
                    "error",
                    "Amounts, costs and counts that are sums of non-negative amounts are not "
                    "negative (revenue, earnings and contribution may be, after refunds).",
                    mart,
                    "ExpectColumnValuesToBeBetween",
                    {"column": column, "min_value": 0},
                    (mart,),
                    show=(*grain, column),
                )
            )
        checks += _ratio_checks(mart)
        checks += _ordered_checks(mart)
    checks += _special_checks(frames)
    return checks


def _grain_checks(mart: str, grain: tuple[str, ...]) -> list[Expectation]:
    description = f"One row per {' and '.join(grain)}, with no empty key (docs/metrics.md)."
    unique = (
        ("ExpectColumnValuesToBeUnique", {"column": grain[0]})
        if len(grain) == 1
        else ("ExpectCompoundColumnsToBeUnique", {"column_list": list(grain)})
    )
    checks = [
        Expectation("one_row_per_grain", "error", description, mart, *unique, (mart,), show=grain)
    ]
    checks += [
        Expectation(
            "one_row_per_grain",
            "error",
            description,
            mart,
            "ExpectColumnValuesToNotBeNull",
            {"column": column},
            (mart,),
            show=grain,
        )
        for column in grain
    ]
    return checks


def _ratio_checks(mart: str) -> list[Expectation]:
    checks = []
    for name, ratio, condition in (r for r in UNIT_RATIOS if r[0] == mart):
        checks.append(
            Expectation(
                "ratios_in_unit_range",
                "error",
                "Shares and ratios of parts lie in [0, 1] where their definition guarantees it.",
                mart,
                "ExpectColumnValuesToBeBetween",
                {"column": ratio, "min_value": 0, "max_value": 1},
                (mart,),
                where=condition,
                show=(*GRAINS[name], ratio),
            )
        )
        if ratio == "take_rate":
            checks.append(
                Expectation(
                    "ratios_in_unit_range",
                    "error",
                    checks[-1].description,
                    mart,
                    "ExpectColumnValuesToBeBetween",
                    {"column": ratio, "max_value": 1},
                    (mart,),
                    show=(*GRAINS[name], ratio),
                )
            )
    return checks


def _ordered_checks(mart: str) -> list[Expectation]:
    return [
        Expectation(
            "parts_within_wholes",
            "error",
            "A part never exceeds its whole (earning hours within live hours, sessions with "
            "earnings within sessions, earning creators within active creators).",
            mart,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": larger, "column_B": smaller, "or_equal": True},
            (mart,),
            show=(*GRAINS[mart], smaller, larger),
        )
        for name, smaller, larger in ORDERED_COUNTS
        if name == mart
    ]


def _special_checks(frames: Mapping[str, pd.DataFrame]) -> list[Expectation]:
    checks = []
    daily = frames.get("platform_daily")
    if daily is not None and "contribution_expected" in daily.columns:
        checks.append(
            Expectation(
                "contribution_adds_up",
                "error",
                "Contribution = platform revenue - transaction cost - infra cost, exactly.",
                "platform_daily",
                "ExpectColumnPairValuesToBeEqual",
                {"column_A": "contribution", "column_B": "contribution_expected"},
                ("platform_daily",),
                show=("day", "contribution", "contribution_expected"),
            )
        )
    if "session_economics" in frames:
        checks.append(
            Expectation(
                "ends_after_start",
                "error",
                "A session ends at or after its start.",
                "session_economics",
                "ExpectColumnPairValuesAToBeGreaterThanB",
                {
                    "column_A": "ended_at",
                    "column_B": "started_at",
                    "or_equal": True,
                    "ignore_row_if": "either_value_is_missing",
                },
                ("session_economics",),
                show=("session_id", "started_at", "ended_at"),
            )
        )
    if "creator_weekly" in frames:
        checks.append(
            Expectation(
                "first_earning_after_start",
                "warn",
                "The median minutes to a first earning is not negative.",
                "creator_weekly",
                "ExpectColumnValuesToBeBetween",
                {"column": "median_minutes_to_first_earning", "min_value": 0},
                ("creator_weekly",),
                show=("week", "creator_id", "median_minutes_to_first_earning"),
            )
        )
    return checks


def _reconciliation_checks() -> list[Expectation]:
    checks = []
    for metric, parts in RECONCILED:
        how = "counted" if parts == 0 else "summed in exact minor units, converted with the fx"
        checks.append(
            Expectation(
                f"{metric}_matches_raw",
                "error",
                f"platform_daily's total {metric} over the days it recomputed equals the raw "
                f"tables' ({how}; money may differ only by the rounding of published decimals).",
                "reconciliation",
                "ExpectColumnPairValuesAToBeGreaterThanB",
                {"column_A": "tolerance", "column_B": "abs_difference", "or_equal": True},
                ("platform_daily",),
                where=("metric", "==", metric),
                show=("mart", "raw", "difference", "tolerance"),
            )
        )
    return checks


def reconciliation_frame(
    daily: pd.DataFrame, client: Client, cost_model: CostModel
) -> pd.DataFrame:
    """platform_daily's totals beside the same totals from the raw tables, over its days (the
    rows given)."""
    days = sorted(set(daily["day"])) if len(daily) else []
    raw = raw_totals(client, days, cost_model)
    rows = []
    for metric, parts in RECONCILED:
        mart = sum(daily[metric], Decimal(0)) if len(daily) else Decimal(0)
        value = raw.get(metric)
        difference = None if value is None else mart - value
        rows.append(
            {
                "metric": metric,
                "mart": mart,
                "raw": value,
                "difference": difference,
                # No raw total (an amount without an fx rate) cannot reconcile.
                "abs_difference": Decimal("Infinity") if difference is None else abs(difference),
                "tolerance": PUBLISHED_QUANTUM * parts * len(days),
            }
        )
    return pd.DataFrame(rows, dtype=object)


def raw_totals(client: Client, days: Sequence, cost_model: CostModel) -> dict[str, Any]:
    """Totals over `days` from the raw tables, dated and deduplicated as the models do (an order
    or refund by its first event); money in the reporting currency, None when an amount is in
    a currency the cost model has no rate for."""
    params = {"days": list(days)}
    counts = client.query(RAW_COUNTS_SQL, parameters=params).result_rows[0]
    totals: dict[str, Any] = {
        "transactions": Decimal(int(counts[0])),
        "failed_transactions": Decimal(int(counts[1])),
    }
    picos = {"gross_volume": 0, "platform_revenue": 0, "creator_earnings": 0}
    for currency, *sums in client.query(RAW_MONEY_SQL, parameters=params).result_rows:
        if currency not in cost_model.fx_pico_per_unit:
            return {**totals, **dict.fromkeys(picos)}
        rate = cost_model.pico_per_minor_unit(currency)
        for name, value in zip(picos, sums, strict=True):
            picos[name] += int(value) * rate
    return {**totals, **{name: Decimal(p) / PICO for name, p in picos.items()}}


# The (creator, week) pairs where a refund took back part of the creator's earnings.
REFUND_WEEKS_SQL = """
SELECT DISTINCT o.creator_id, toMonday(r.ts)
FROM (SELECT order_id, min(occurred_at) AS ts FROM raw_order_refunded GROUP BY order_id) AS r
INNER JOIN (SELECT order_id, argMin(creator_id, occurred_at) AS creator_id
            FROM raw_order_paid GROUP BY order_id) AS o ON o.order_id = r.order_id"""


def _in_days(time: str) -> str:
    """A condition on the UTC day of `time`; the days are bound as a parameter."""
    return f"toDate32({time}) IN {{days:Array(Date32)}}"


RAW_COUNTS_SQL = f"""
WITH orders AS (SELECT order_id, min(occurred_at) AS ts FROM raw_order_paid GROUP BY order_id)
SELECT
  (SELECT countIf({_in_days("occurred_at")}) FROM raw_coins_purchased)
  + (SELECT countIf({_in_days("occurred_at")}) FROM raw_gift_sent)
  + (SELECT countIf({_in_days("ts")}) FROM orders),
  (SELECT countIf({_in_days("occurred_at")}) FROM raw_gift_failed)
  + (SELECT countIf({_in_days("occurred_at")}) FROM raw_checkout_failed)"""
RAW_MONEY_SQL = f"""
WITH orders AS (
  SELECT order_id, min(occurred_at) AS ts, argMin(currency, occurred_at) AS currency,
         argMin(gross_minor, occurred_at) AS gross,
         argMin(commission_minor, occurred_at) AS commission,
         argMin(creator_net_minor, occurred_at) AS net
  FROM raw_order_paid GROUP BY order_id),
refunds AS (SELECT order_id, min(occurred_at) AS ts FROM raw_order_refunded GROUP BY order_id)
SELECT currency, sum(gross), sum(revenue), sum(earnings) FROM (
  SELECT currency, value_minor AS gross, platform_fee_minor AS revenue,
         value_minor - platform_fee_minor AS earnings
  FROM raw_gift_sent WHERE {_in_days("occurred_at")}
  UNION ALL
  SELECT currency, gross, commission, net FROM orders WHERE {_in_days("ts")}
  UNION ALL
  SELECT o.currency, 0, -o.commission, -o.net
  FROM refunds AS r INNER JOIN orders AS o ON o.order_id = r.order_id
  WHERE {_in_days("r.ts")})
GROUP BY currency"""
