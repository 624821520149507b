"""Tidewire: a real-time streaming gateway for trading platforms."""

__version__ = "0.1.0"
