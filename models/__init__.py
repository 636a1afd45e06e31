"""Metric models over the warehouse: live time, costs, earnings frequency and the marts."""
