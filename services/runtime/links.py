"""Links we put into messages to leads (a video's URL): https, on a configured host, nothing hidden in them.

A link in a LinkedIn message or an email is trusted by its reader because it comes from us. One that came
from a provider's callback is checked before it is stored or sent: a forged or compromised callback must
not be able to put an arbitrary link in front of leads.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_LINK = 2048


def allowed_hosts(setting: str) -> list[str]:
    """The hosts of ``LEADSTREAM_LINK_ALLOWED_HOSTS``: comma-separated, lower-cased; ``.example.com`` allows
    example.com's subdomains."""
    return [h.strip().lower() for h in setting.split(",") if h.strip()]


def link_refusal(url: str, hosts: list[str]) -> str | None:
    """Why ``url`` may not be sent to a lead, or None when it may."""
    if len(url) > MAX_LINK:
        return f"is longer than {MAX_LINK} characters"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme != "https":
        return "is not https"
    if parts.username is not None or parts.password is not None:
        return "carries credentials"
    if port not in (None, 443):
        return "uses a port other than 443"
    host = (parts.hostname or "").lower().rstrip(".")
    for allowed in hosts:
        if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
            return None
    return f"is not on an allowed host ({host or 'none'}; LEADSTREAM_LINK_ALLOWED_HOSTS)"
