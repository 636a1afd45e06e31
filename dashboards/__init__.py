"""Streamlit dashboards over the published marts, for product teams, finance and creators."""
