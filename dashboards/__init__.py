"""Streamlit dashboards over the published marts, for product teams, finance and creators."""

MARTS_ENV = "CREATOR_ECON_MARTS"
"""Environment variable naming the marts folder the app reads."""
