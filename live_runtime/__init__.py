"""The live and gifting runtime, its event model and the telemetry it writes."""
