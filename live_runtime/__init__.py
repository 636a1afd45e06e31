"""The live and gifting runtime: HTTP and WebSocket server, ledger, policy and outbox relay."""
