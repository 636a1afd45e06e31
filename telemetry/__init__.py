"""The telemetry contract (docs/telemetry.md): the event model and the sealed-file format.

The runtime and the simulator write telemetry with it and ingest reads it with it, so producer
and consumer cannot drift apart. It imports nothing else from the project.
"""
