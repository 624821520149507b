"""Tidewire: a real-time streaming gateway for trading platforms."""

# The one place the package version is written: pyproject.toml reads it from here
# (`dynamic = ["version"]`, [tool.hatch.version]). Not the wire protocol's version, which is
# tidewire.protocol.messages.PROTOCOL_VERSION.
__version__ = "0.1.0"
