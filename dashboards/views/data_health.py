"""Data health: is telemetry still arriving, what ingest did with every line, and whether the
data-quality checks that guard the marts pass."""

from datetime import UTC, datetime

import polars as pl
import streamlit as st

from dashboards import data, ui

st.title("Data health")
st.markdown(
    "Before the numbers on the other pages can be trusted, telemetry has to keep arriving, every "
    "line has to be accounted for, and the data-quality checks have to pass. An **error**-level "
    "check that fails stops the pipeline before it republishes the marts; a **warning** is shown "
    "here and publishing goes on."
)

with ui.marts_required():
    freshness = data.freshness()
    checks = data.check_results()
    log = data.ingest_log()
    reasons = data.quarantine_reasons()
    by_source = data.duplicates()


TIME_FORMAT = "D MMM YYYY, HH:mm:ss"  # times in the tables, all UTC


def hours_text(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.3g} h"
    return f"{hours / 24:.3g} days"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def when(value: datetime | None) -> str:
    return ui.NOTHING if value is None else f"{value:%d %b %Y %H:%M} UTC"


# --- Freshness --------------------------------------------------------------------------------
st.header("Freshness", divider="gray")
if freshness is None or freshness["newest_file"] is None:
    folder = "" if freshness is None else f" in `{freshness['telemetry_dir']}`"
    st.warning(f"No sealed telemetry file has arrived{folder} yet.", icon=":material/warning:")
else:
    threshold = freshness["threshold_hours"]
    # Age is measured now, not at publish time: a pipeline that stopped running shows as stale.
    age = (datetime.now(UTC) - freshness["newest_file_at"]).total_seconds() / 3600
    stale = age > threshold
    cells = st.columns(4)
    cells[0].metric("Telemetry", "Stopped" if stale else "Arriving")
    cells[1].metric(
        "Newest file arrived",
        f"{hours_text(age)} ago",
        help="When the newest sealed telemetry file was sealed (its modification time). "
        "Arrival, not event time: replayed history carries old event times.",
    )
    cells[2].metric("Threshold", hours_text(threshold), help="CREATOR_ECON_FRESHNESS_HOURS")
    newest_event = freshness["newest_event_at"]
    cells[3].metric(
        "Newest event",
        ui.NOTHING if newest_event is None else f"{newest_event:%d %b %Y}",
        help="The latest time an event says it happened (UTC); context only.",
    )
    if stale:
        st.warning(
            f"No new sealed telemetry file for {hours_text(age)}, more than the "
            f"{hours_text(threshold)} threshold. Check that the runtime and its relay are running "
            "and sealing files, and that the pipeline is running.",
            icon=":material/warning:",
        )
    st.caption(
        f"Newest file `{freshness['newest_file']}` in `{freshness['telemetry_dir']}` · last file "
        f"ingested {when(freshness['newest_ingested_at'])} · health published "
        f"{when(freshness['checked_at'])}."
    )

# --- Checks -----------------------------------------------------------------------------------
st.header("Data-quality checks", divider="gray")
failing = checks.filter(~pl.col("passed"))
errors = failing.filter(pl.col("severity") == "error")
cells = st.columns(3)
cells[0].metric("Checks passing", f"{checks.height - failing.height} of {checks.height}")
cells[1].metric("Errors failing", errors.height, help="Each blocks publishing the marts.")
cells[2].metric("Warnings failing", failing.height - errors.height)
if checks.is_empty():
    st.info("No check has run yet.", icon=":material/info:")
elif errors.height:
    names = ", ".join(f"{r['check_name']} on {r['target']}" for r in errors.head(5).to_dicts())
    st.error(
        f"{plural(errors.height, 'error-level check')} failing ({names}). A run stops before "
        "republishing the marts while any does, so the marts may be older than the telemetry.",
        icon=":material/error:",
    )
else:
    st.success("Every error-level check passes.", icon=":material/check_circle:")
st.dataframe(
    checks.select(
        pl.when(pl.col("passed")).then(pl.lit("pass")).otherwise(pl.lit("FAIL")).alias("result"),
        "severity",
        "suite",
        pl.col("check_name").alias("check"),
        "target",
        "observed",
        "description",
        "checked_at",
    ),
    hide_index=True,
    width="stretch",
    column_config={
        "checked_at": st.column_config.DatetimeColumn("checked at (UTC)", format=TIME_FORMAT)
    },
)
st.caption(
    "The latest outcome of each check: raw-table checks run after every ingest, mart checks "
    "when the marts are published, the freshness check on every run."
)

# --- Ingest log -------------------------------------------------------------------------------
st.header("Ingest log", divider="gray")
totals = log.select(
    pl.len().alias("files"),
    *(
        pl.col(c).sum()
        for c in ("lines_read", "loaded", "duplicates", "quarantined", "conflicting", "bytes")
    ),
).row(0, named=True)
cells = st.columns(5)
cells[0].metric("Files", ui.number(totals["files"]))
cells[1].metric("Lines read", ui.number(totals["lines_read"]))
cells[2].metric("Loaded", ui.number(totals["loaded"]))
cells[3].metric("Duplicates dropped", ui.number(totals["duplicates"]))
cells[4].metric(
    "Quarantined",
    ui.number(totals["quarantined"]),
    help=f"Of which {totals['conflicting'] or 0:,} conflicting "
    f"{'duplicate' if totals['conflicting'] == 1 else 'duplicates'}.",
)
unbalanced = log.filter(
    pl.col("lines_read") != pl.col("loaded") + pl.col("duplicates") + pl.col("quarantined")
)
if log.is_empty():
    st.info("No telemetry file has been ingested yet.", icon=":material/info:")
elif unbalanced.is_empty():
    st.success(
        "Every line is accounted for: lines read = loaded + duplicates + quarantined in "
        f"{'the one file' if log.height == 1 else f'all {log.height:,} files'} "
        f"({totals['lines_read']:,} = {totals['loaded']:,} + "
        f"{totals['duplicates']:,} + {totals['quarantined']:,}).",
        icon=":material/check_circle:",
    )
else:
    st.error(
        f"Lines read ≠ loaded + duplicates + quarantined in {plural(unbalanced.height, 'file')}: "
        + ", ".join(unbalanced["file"].head(5).to_list()),
        icon=":material/error:",
    )
st.dataframe(
    log.select(
        "file",
        "lines_read",
        "loaded",
        "duplicates",
        "quarantined",
        "conflicting",
        (pl.col("bytes") / 1e6).alias("MB"),
        "ingested_at",
    ),
    hide_index=True,
    width="stretch",
    column_config={
        "MB": st.column_config.NumberColumn(format="%.1f"),
        "ingested_at": st.column_config.DatetimeColumn("ingested at (UTC)", format=TIME_FORMAT),
    },
)

# --- Quarantine -------------------------------------------------------------------------------
st.header("Quarantine", divider="gray")
if reasons.is_empty():
    st.success("No line has been quarantined.", icon=":material/check_circle:")
else:
    st.markdown(
        "Lines that were not loaded, by reason: not JSON, a missing or mistyped field, a broken "
        "money invariant, an unknown type or currency, or an event_id reused with a different "
        "payload (`conflicting_duplicate`; the first payload stays loaded)."
    )
    st.dataframe(
        reasons.select("reason", "lines", "files", "first_at", "last_at"),
        hide_index=True,
        width="stretch",
        column_config={
            "first_at": st.column_config.DatetimeColumn("first (UTC)", format=TIME_FORMAT),
            "last_at": st.column_config.DatetimeColumn("last (UTC)", format=TIME_FORMAT),
        },
    )
    for index, reason in enumerate(reasons.to_dicts()):
        label = f"{reason['reason']}: {plural(reason['lines'], 'line')}, sample lines"
        with st.expander(label, expanded=index == 0):
            for sample in data.quarantine_samples(reason["reason"]).to_dicts():
                cut = sample["line_bytes"] > len(sample["raw_line"].encode())
                st.caption(
                    f"`{sample['file']}` line {sample['line']:,}"
                    + (f" (first characters of {sample['line_bytes']:,} bytes)" if cut else "")
                )
                st.code(sample["raw_line"] or "(empty line)", language=None, wrap_lines=True)

# --- Duplicates -------------------------------------------------------------------------------
st.header("Duplicates", divider="gray")
st.markdown(
    "Delivery is at least once, so a line may arrive again. An exact copy of a loaded event is "
    "dropped and counted; a line that reuses a loaded event_id with a different payload is "
    "quarantined as a conflicting duplicate."
)
st.dataframe(
    by_source,
    hide_index=True,
    width="stretch",
    column_config={"duplicate_share": st.column_config.NumberColumn(format="percent")},
)
