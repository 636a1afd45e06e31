"""The ClickHouse warehouse: how to open it, and the DDL of every table it holds."""
