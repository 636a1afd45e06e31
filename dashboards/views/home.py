"""Home: what the app shows, where to find it, and how fresh the numbers are."""

import streamlit as st

from dashboards import data, ui

st.title("Creator economics")
st.markdown(
    "Two questions drive this app: **does effort turn into income for creators**, often and "
    "early rather than as a lottery, and **does the platform's cost per live minute and per "
    "transaction stay under control** as it grows. Every number comes from the published marts "
    "and follows the definitions in `docs/metrics.md`."
)

st.page_link("views/finance.py", label="Finance", icon=":material/payments:")
st.caption("Unit costs, contribution margin, take rate, and what infra and payments cost.")
st.page_link("views/product.py", label="Product", icon=":material/insights:")
st.caption("How often creators earn while live, and how evenly earnings are spread.")
st.page_link("views/creator.py", label="Creator", icon=":material/person:")
st.caption("One creator's weeks and sessions.")

st.divider()
with ui.marts_required():
    latest = data.latest_day()
if latest is None:
    st.info(f"The marts hold no days yet. Run `{data.RUN_HINT}` once telemetry has arrived.")
else:
    st.markdown(f"**Data through {latest:%A %d %B %Y}** (UTC), the latest day in the marts.")
st.caption(f"Marts folder: `{data.marts_dir()}`")
