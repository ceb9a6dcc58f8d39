"""Real-time serving: one ASGI app, protocol adapters over one data plane (nothing else imports the web stack)."""
