"""Entry script for `streamlit run`: registers the pages and runs the one the reader picked.

The page scripts live in `views/`, not `pages/`: Streamlit would otherwise also discover a
`pages/` folder on its own and, for a deep link opened first, run a page without this script.
"""

import streamlit as st

st.set_page_config(page_title="Creator economics", page_icon=":material/live_tv:", layout="wide")

pages = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/finance.py", title="Finance", icon=":material/payments:"),
    st.Page("views/product.py", title="Product", icon=":material/insights:"),
    st.Page("views/creator.py", title="Creator", icon=":material/person:"),
    st.Page(
        "views/data_health.py",
        title="Data health",
        icon=":material/health_and_safety:",
        url_path="health",  # the page's address since it first shipped
    ),
]
st.navigation(pages).run()
