"""TLS for both ports: one server context from `tls_cert_file` and `tls_key_file`."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path, key_file: Path | None) -> ssl.SSLContext:
    """A TLS 1.2+ server context. Raises ValueError naming the file that cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"tls_cert_file {cert_file} / tls_key_file {key_file}: cannot load ({exc})"
        ) from None
    return context
