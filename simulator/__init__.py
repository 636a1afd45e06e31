"""A seeded simulation of a whole platform that writes telemetry exactly as the runtime does."""
