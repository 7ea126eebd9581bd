"""Gateway Bench: measure what moving a Python web service from WSGI to ASGI buys."""

__version__ = "0.1.0"
