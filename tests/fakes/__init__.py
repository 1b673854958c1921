"""Real stand-ins for external services, run on loopback for tests."""
