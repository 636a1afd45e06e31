"""A load generator that drives a running runtime over HTTP and WebSocket like real clients."""
