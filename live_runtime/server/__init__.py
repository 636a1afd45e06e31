"""The runtime's HTTP and WebSocket API (Starlette on uvicorn)."""
