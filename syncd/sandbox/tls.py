"""TLS for the sandbox: a generated certificate authority and a server certificate for 127.0.0.1.

simple-salesforce always builds https:// URLs, so the sandbox must speak TLS; clients trust the CA file
written here (``ca_file`` in the sandbox's info file).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class SandboxTLS:
    """The CA file clients should trust, and a server-side SSL context for 127.0.0.1 and localhost."""

    ca_file: Path
    context: ssl.SSLContext


def make_tls(directory: Path) -> SandboxTLS:
    """Generate a CA and a server certificate, writing the CA to ``directory/ca.pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="syncd sandbox")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return SandboxTLS(ca_file=ca_file, context=context)
