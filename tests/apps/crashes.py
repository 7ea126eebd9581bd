"""An app that fails as it is imported, as a broken deployment does (tests/test_yourapp_launch.py)."""

raise RuntimeError("this app fails at import: DATABASE_URL is not set")
