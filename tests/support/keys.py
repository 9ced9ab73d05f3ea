"""Standard Webhooks keys for tests: a ``whsec_`` secret derived from a name, so each test's key is its own."""

from __future__ import annotations

import base64
import hashlib


def signing_key(name: str) -> str:
    """A ``whsec_`` secret of 32 bytes derived from ``name``."""
    return "whsec_" + base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()
