"""Connected-account events on ``leadstream.account.v1`` keyed by ``account_id``."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from ..base import Event, register
from ..bounds import Code, Name
from ..topics import ACCOUNT

AccountStatus = Literal[
    "pending",
    "ok",
    "reconnected",
    "sync_success",
    "running",
    "connected",
    "credentials",
    "disconnected",
    "auth_required",
    "sleeping",
    "limit_reached",
    "message_limit_reached",
    "verification_failed",
    "deleted",
]
HEALTHY_STATUSES: frozenset[str] = frozenset({"ok", "reconnected", "sync_success", "running", "connected"})
LIMIT_STATUSES: frozenset[str] = frozenset({"limit_reached", "message_limit_reached"})
"""An account paused by a LinkedIn limit (invitations, messages) until its next window: no reconnect needed."""


class AccountEvent(Event):
    """Base of account events."""

    topic: ClassVar[str] = ACCOUNT.name
    key_field: ClassVar[str] = "account_id"

    account_id: UUID


@register
class AccountConnectionRequested(AccountEvent):
    """A hosted authorisation link was issued; the connection is pending until its callback."""

    event_type: ClassVar[str] = "leadstream.account.connection_requested.v1"

    provider: Code = "linkedin"


@register
class AccountConnected(AccountEvent):
    """An account finished connecting and can send."""

    event_type: ClassVar[str] = "leadstream.account.connected.v1"

    provider: Code = "linkedin"
    display_name: Name | None = None
    sender_email_verified: bool = False


@register
class AccountStatusChanged(AccountEvent):
    """The provider reported a new account status (healthy, or needing reconnection), the account reached a
    LinkedIn limit (``limit_reached``: invitations, ``message_limit_reached``: messages) and waits ``until`` its
    next window, or an email sender's address could not be verified (``verification_failed``)."""

    event_type: ClassVar[str] = "leadstream.account.status_changed.v1"

    status: AccountStatus
    previous: AccountStatus | None = None
    healthy: bool
    until: datetime | None = None


@register
class AccountLeaseAcquired(AccountEvent):
    """A running campaign took a lease on the account."""

    event_type: ClassVar[str] = "leadstream.account.lease_acquired.v1"

    campaign_id: UUID


@register
class AccountLeaseReleased(AccountEvent):
    """A campaign released its lease on the account (paused, finished or deleted)."""

    event_type: ClassVar[str] = "leadstream.account.lease_released.v1"

    campaign_id: UUID


@register
class AccountDeleted(AccountEvent):
    """The account was removed from the workspace."""

    event_type: ClassVar[str] = "leadstream.account.deleted.v1"
