"""Entry script for `streamlit run`: registers the pages and runs the one the reader picked."""

import streamlit as st

st.set_page_config(page_title="Creator economics", page_icon=":material/live_tv:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/finance.py", title="Finance", icon=":material/payments:"),
    st.Page("pages/product.py", title="Product", icon=":material/insights:"),
    st.Page("pages/creator.py", title="Creator", icon=":material/person:"),
]
st.navigation(pages).run()
