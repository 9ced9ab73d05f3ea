"""Send-time compliance, email rendering and account assignment. Pure.

Before every send the lead is checked against the workspace blocklist (domains, emails, LinkedIn
profile URLs) and the suppression list (unsubscribed leads and addresses, bounced addresses).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

BLOCK_KINDS = ("domain", "email", "profile_url")


def normalise_email(email: str | None) -> str | None:
    """Lower-cased, trimmed address, or None."""
    if not email or "@" not in email:
        return None
    return email.strip().lower()


def email_domain(email: str | None) -> str | None:
    """The domain part of an address."""
    norm = normalise_email(email)
    return norm.rsplit("@", 1)[1] if norm else None


def normalise_domain(value: str) -> str:
    """``https://www.Acme.com/x`` or ``@acme.com`` -> ``acme.com``."""
    v = value.strip().lower()
    if "://" in v:
        v = urlsplit(v).hostname or v
    v = v.lstrip("@").split("/", 1)[0]
    return v.removeprefix("www.")


def normalise_profile_url(url: str | None) -> str | None:
    """``https://www.linkedin.com/in/Ada-Adler/?x=1`` -> ``linkedin.com/in/ada-adler``."""
    if not url:
        return None
    v = url.strip().lower()
    if "://" not in v:
        v = "https://" + v
    parts = urlsplit(v)
    host = (parts.hostname or "").removeprefix("www.")
    return f"{host}{parts.path}".rstrip("/")


# A host name as blocklist entries hold it: labels joined by dots, at least two, no spaces (unicode letters allowed:
# an internationalised domain is kept as typed, lower-cased).
_HOST = re.compile(r"[^\s./@:]+(\.[^\s./@:]+)+")

BLOCK_VALUE_PROBLEMS = {
    "domain": "not a domain (like acme.com)",
    "email": "not an email address (like name@acme.com)",
    "profile_url": "not a profile URL (like linkedin.com/in/ada-adler)",
}
"""Why a value is refused as a blocklist entry of each kind (the 422 naming ``value`` says it)."""


def normalise_block_value(kind: str, value: str) -> str | None:
    """The stored form of a blocklist entry of ``kind``, or None when ``value`` is not one.

    An entry that is not what its kind says could never match a lead (contacts are matched in these normalised
    forms: :meth:`Contact.block_keys`), so keeping it would tell the user a send is blocked when it is not.
    """
    if kind == "domain":
        domain = normalise_domain(value)
        return domain if _HOST.fullmatch(domain) else None
    if kind == "email":
        email = normalise_email(value)
        if email is None:
            return None
        local, _, host = email.rpartition("@")
        return email if local and " " not in local and _HOST.fullmatch(host) else None
    url = normalise_profile_url(value)
    if url is None:
        return None
    host, _, path = url.partition("/")
    return url if _HOST.fullmatch(host) and path.strip("/") else None


@dataclass(frozen=True)
class Contact:
    """What a lead can be recognised by."""

    lead_id: str
    email: str | None = None
    linkedin_url: str | None = None

    def block_keys(self) -> list[tuple[str, str]]:
        """(kind, normalised value) pairs to look up in the blocklist."""
        keys: list[tuple[str, str]] = []
        email = normalise_email(self.email)
        if email:
            keys.append(("email", email))
            domain = email.rsplit("@", 1)[1]
            labels = domain.split(".")
            # a blocked parent domain covers its subdomains (mail.acme.com is acme.com's)
            keys.extend(("domain", ".".join(labels[i:])) for i in range(len(labels) - 1))
        url = normalise_profile_url(self.linkedin_url)
        if url:
            keys.append(("profile_url", url))
        return keys


def blocked_by(contact: Contact, blocklist: Iterable[tuple[str, str]]) -> str | None:
    """The blocklist entry matching the lead (``"domain acme.com"``), or None."""
    entries = set(blocklist)
    for key in contact.block_keys():
        if key in entries:
            return f"{key[0]} {key[1]}"
    return None


def suppression(
    action: str, lead_reason: str | None, email: str | None, email_reason: str | None
) -> tuple[str, bool] | None:
    """Why the action must not go, and whether that stops the lead on every channel; None when it may go.

    An unsubscribed (or manually suppressed) lead or address stops every channel; a bounced address
    only stops emails.
    """
    if lead_reason:
        return f"lead {lead_reason}", True
    if email_reason and email_reason != "bounced":
        return f"address {email} {email_reason}", True
    if email_reason and action == "email":
        return f"address {email} {email_reason}", False
    return None


# -- emails --------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{?\s*([a-z_]+)\s*\}?\}")


def render_template(template: str, fields: dict[str, Any]) -> str:
    """Fill ``{first_name}`` / ``{{ company }}`` placeholders; unknown or empty ones become ''."""
    return _PLACEHOLDER.sub(lambda m: str(fields.get(m.group(1)) or ""), template)


def unsubscribe_url(base_url: str, workspace_id: str, lead_id: str, token: str) -> str:
    """The one-click unsubscribe link of a lead."""
    query = urlencode({"w": workspace_id, "l": lead_id, "t": token})
    return f"{base_url.rstrip('/')}/v1/unsubscribe?{query}"


def render_email(*, sender: str, to: str, subject: str, body: str, unsubscribe: str) -> dict[str, str]:
    """The complete email: body with an unsubscribe footer, and the RFC 8058 one-click headers."""
    full_body = f"{body.rstrip()}\n\n--\nNot interested? Unsubscribe with one click: {unsubscribe}\n"
    return {
        "from": sender,
        "to": to,
        "subject": subject,
        "body": full_body,
        "unsubscribe_url": unsubscribe,
        "list_unsubscribe": f"<{unsubscribe}>",
        "list_unsubscribe_post": "List-Unsubscribe=One-Click",
    }


# -- account assignment --------------------------------------------------------------------------


def assign_account(lead_id: str, account_ids: Sequence[str]) -> str:
    """The account a lead is worked from: rendezvous hashing, so the choice is deterministic, spreads
    leads evenly, and moves only the leads of an account that is removed."""
    if not account_ids:
        raise ValueError("no account to assign")

    def weight(account: str) -> int:
        return int.from_bytes(hashlib.sha256(f"{lead_id}|{account}".encode()).digest()[:8], "big")

    return max(sorted(account_ids), key=weight)
