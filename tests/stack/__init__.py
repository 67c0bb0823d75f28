"""The local service stack shared by every service test: the fixtures plugin (fixtures.py, registered by
tests/conftest.py), the server processes (servers.py) and the gateway handle and helpers (gateway_support.py)."""
