"""The runtime's double-entry ledger: schema, money operations, group-committing writer."""
