"""Is the data right: data-quality suites, freshness, reconciliation with the runtime ledger,
and the tables the data health page shows. Nothing here imports Dagster."""
