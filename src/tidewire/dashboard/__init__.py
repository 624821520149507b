"""The browser dashboard: static ES modules served by the control plane at `/`."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
"""index.html, the dashboard's modules, the JavaScript client and vendored uPlot."""
