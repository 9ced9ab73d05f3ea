"""Outreach's own tables (schema ``outreach``), and the send counts pacing reads.

Lock order every transaction follows (so concurrent replicas never deadlock on each other):
timers -> lead_locks -> enrollments -> accounts -> campaigns; an email step then takes its mailbox's
advisory lock (:func:`lock_mailbox`) last. Bulk changes of timers made by
event handlers and webhooks lock the timer rows first; the step executor re-checks the
enrollment, campaign and account inside its own transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from services.runtime.db import service_metadata
from services.runtime.idempotency import idempotency_table
from services.runtime.webhooks import seen_webhooks_table

SCHEMA = "outreach"
metadata, runtime_tables = service_metadata(SCHEMA)


def _ts(name: str, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


accounts = Table(
    "accounts",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False, index=True),
    Column("provider", Text, nullable=False),  # linkedin | email
    Column("display_name", Text, nullable=True),
    Column("status", Text, nullable=False),
    Column("healthy", Boolean, nullable=False, server_default=text("false")),
    Column("sender_email", Text, nullable=True),
    Column("sender_email_verified", Boolean, nullable=False, server_default=text("false")),
    Column("notify_email", Text, nullable=True),
    Column("provider_account_id", Text, nullable=True),
    Column("incident", Integer, nullable=False, server_default=text("0")),
    _ts("limit_paused_until"),
    # An email sender's verification (0005): when it was asked for and last checked, and the provider's word
    # when it failed (the sender's id with the provider is ``provider_account_id``).
    _ts("verification_requested_at"),
    _ts("verification_checked_at"),
    Column("verification_detail", Text, nullable=True),
    _ts("deleted_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

reconnect_emails = Table(
    "reconnect_emails",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("incident", Integer, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("to_address", Text, nullable=False),
    Column("status", Text, nullable=False),  # previous -> new status that opened the incident
    Column("dry_run", Boolean, nullable=False),
    _ts("sent_at", nullable=False),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("audience_type", Text, nullable=False),
    Column("audience_ref", Text, nullable=False),
    Column("workflow", JSONB, nullable=False),  # the current version's graph
    Column("workflow_version", Integer, nullable=False, server_default=text("1")),
    Column("strategy", JSONB, nullable=False),
    Column("delivery", JSONB, nullable=False),
    Column("account_ids", JSONB, nullable=False),
    Column("video_template", JSONB, nullable=True),
    Column("state", Text, nullable=False),  # pending scheduled running paused finished needs_review deleted
    Column("pause_reason", Text, nullable=True),
    Column("message", Text, nullable=True),
    Column("skipped_accounts", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _ts("next_run_at"),
    _ts("launched_at"),
    _ts("started_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("workflow", JSONB, nullable=False),
    _ts("created_at", nullable=False),
)
"""Every version of every campaign's sequence: a lead runs the version it was enrolled on (or moved to)."""

campaign_workers = Table(
    "campaign_workers",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("worker_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("state", Text, nullable=False),  # active | paused_account | stopped
    Index("ix_workers_account", "account_id"),
)

leases = Table(
    "leases",
    metadata,
    Column("account_id", UUID(as_uuid=True), primary_key=True),
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    _ts("acquired_at", nullable=False),
)

leads = Table(
    "leads",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("linkedin_url", Text, nullable=True),
    Column("profile_key", Text, nullable=True),  # the normalised profile URL (webhooks name leads by it)
    Column("email", Text, nullable=True),
    Column("email_verified", Boolean, nullable=False, server_default=text("false")),
    Column("full_name", Text, nullable=True),
    Column("first_name", Text, nullable=True),
    Column("last_name", Text, nullable=True),
    Column("company", Text, nullable=True),
    Column("city", Text, nullable=True),
    Column("headline", Text, nullable=True),
    Column("post_url", Text, nullable=True),
    Column("post_matched", Boolean, nullable=False, server_default=text("false")),  # post_url from a watch (0004)
    Column("location", Text, nullable=True),  # where the lead is (discovery's location): per-lead hours (0004)
    Column("ready", Boolean, nullable=False, server_default=text("false")),
    _ts("updated_at", nullable=False),
    Index("ix_leads_profile", "workspace_id", "profile_key"),
    Index("ix_leads_email", "workspace_id", "email"),
)

audience_members = Table(
    "audience_members",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),  # source_group | search
    Column("ref", Text, primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Index("ix_members_lead", "workspace_id", "lead_id"),
)

searches = Table(
    "searches",
    metadata,
    Column("search_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("source_group_id", UUID(as_uuid=True), nullable=True),
    Column("kind", Text, nullable=False),
    Column("url", Text, nullable=True),
    Column("finished", Boolean, nullable=False, server_default=text("false")),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=False),
    # active | duplicate | replied | completed | blocked | suppressed | failed | stopped
    Column("state", Text, nullable=False),
    Column("steps_done", Integer, nullable=False, server_default=text("0")),
    Column("workflow_version", Integer, nullable=False, server_default=text("1")),  # the sequence it runs on
    _ts("accepted_at"),
    _ts("paused_until"),  # an out-of-office answer: no step runs before then (0004)
    _ts("enrolled_at", nullable=False),
    _ts("finished_at"),
    Index("ix_enrollments_lead", "workspace_id", "lead_id"),
)

lead_locks = Table(
    "lead_locks",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
)

texts = Table(
    "texts",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("step_id", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("status", Text, nullable=False),  # generated | approved
    Column("draft_id", UUID(as_uuid=True), nullable=False),
    Column("text", Text, nullable=False),
    Column("subject", Text, nullable=True),
    _ts("updated_at", nullable=False),
)

videos = Table(
    "videos",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("status", Text, nullable=False),  # ready | failed
    Column("video_url", Text, nullable=True),
)

timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("key", Text, nullable=False),
    Column("workspace_id", Text, nullable=False),
    Column("kind", Text, nullable=False),  # step | accept_wait | campaign_start | inbound
    Column("campaign_id", UUID(as_uuid=True), nullable=True),
    Column("lead_id", UUID(as_uuid=True), nullable=True),
    Column("account_id", UUID(as_uuid=True), nullable=True),
    Column("step_id", Text, nullable=True),
    Column("state", Text, nullable=False),  # pending | waiting | done | cancelled
    Column("waiting_for", Text, nullable=True),  # text | video | accept | send
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("outcome", Text, nullable=True),
    Column("traceparent", Text, nullable=True),  # of what scheduled it or made it due: its run continues it (0004)
    _ts("updated_at", nullable=False),
    UniqueConstraint("key", name="uq_timers_key"),
    Index("ix_timers_due", "due_at", postgresql_where=text("state IN ('pending', 'waiting')")),
    Index("ix_timers_lead", "workspace_id", "lead_id"),
    Index("ix_timers_campaign", "campaign_id"),
)

# One row per step that reached the send: the send intent, committed before the provider is called (its
# request id is the provider's idempotency key), then its outcome (see sends.py; columns from 0003 on).
sends = Table(
    "sends",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("step_id", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=True),
    Column("action", Text, nullable=False),
    Column("request_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("provider_ref", Text, nullable=True),
    Column("dry_run", Boolean, nullable=False, server_default=text("false")),
    # The sending mailbox (normalised address) of an email: the email cap counts per mailbox (0002).
    Column("sender", Text, nullable=True),
    _ts("sent_at", nullable=False),  # campaign time of the (latest) attempt: what pacing counts
    Column("state", Text, nullable=False, server_default=text("'sent'")),  # pending sent failed rate_limited unknown
    Column("event", JSONB, nullable=True),  # the action event to emit once it is known to be sent
    Column("reason", Text, nullable=True),  # the ActionFailed reason should it end unsent now
    Column("detail", Text, nullable=True),  # what the provider (or the lookup) last said
    _ts("reconcile_at"),  # wall-clock time from which a pending intent's outcome is asked of the provider
    Column("reconcile_attempts", Integer, nullable=False, server_default=text("0")),
    Column("traceparent", Text, nullable=True),  # of the step that opened it: its reconciliation continues it (0004)
    Index("ix_sends_account", "account_id", "action", "sent_at"),
    Index("ix_sends_sender", "workspace_id", "sender", "action", "sent_at"),
    Index("ix_sends_pending", "reconcile_at", postgresql_where=text("state = 'pending'")),
    # Replies from the mailbox are matched by the Message-ID of the email they answer (0004).
    Index("ix_sends_message_id", "provider_ref", postgresql_where=text("action = 'email'")),
)

blocklist = Table(
    "blocklist",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),  # domain | email | profile_url
    Column("value", Text, primary_key=True),
    _ts("created_at", nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),  # lead | email
    Column("value", Text, primary_key=True),
    Column("reason", Text, nullable=False),  # unsubscribed | bounced | manual
    _ts("created_at", nullable=False),
)

seen_webhooks = seen_webhooks_table(metadata)
idempotency_keys = idempotency_table(metadata)  # campaign creates and launches sent twice make one campaign

# The simulated providers' own memory (what a remote provider would keep on its side): request ids
# already answered, so a retried call with the same id is not performed twice, even after a crash.
sim_linkedin_requests = Table(
    "sim_linkedin_requests",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("lead_id", Text, nullable=False),
    Column("result", JSONB, nullable=False),
    Column("replays", Integer, nullable=False, server_default=text("0")),
    _ts("created_at", nullable=False),
    Index("ix_sim_linkedin_account", "account_id", "kind", "created_at"),
)

sim_email_requests = Table(
    "sim_email_requests",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("to_address", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("replays", Integer, nullable=False, server_default=text("0")),
    _ts("created_at", nullable=False),
)

# Where each inbox poller is: the SMTP mailbox over IMAP (``imap:<login>@<host>/<mailbox>``) or a LinkedIn
# account's provider inbox (``linkedin:<account id>``); a row per inbox, due when its next poll is (0004).
inbox_cursors = Table(
    "inbox_cursors",
    metadata,
    Column("key", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # imap | linkedin
    Column("account_id", UUID(as_uuid=True), nullable=True),
    Column("uidvalidity", BigInteger, nullable=True),  # IMAP: UIDs are valid within this value
    Column("last_uid", BigInteger, nullable=False, server_default=text("0")),  # IMAP: messages after it are new
    Column("cursor", Text, nullable=True),  # LinkedIn: the newest message time already read (ISO 8601)
    _ts("due_at", nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("polls", Integer, nullable=False, server_default=text("0")),
    Column("messages", Integer, nullable=False, server_default=text("0")),
    Column("replies", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    _ts("last_polled_at"),
    _ts("updated_at", nullable=False),
)

# Every inbound message an inbox poller handled, by its id (the Message-ID, or the provider's message id), with
# what it was taken for: a replay after a crash, a UIDVALIDITY change or an overlapping page does nothing twice.
inbox_messages = Table(
    "inbox_messages",
    metadata,
    Column("inbox", Text, primary_key=True),
    Column("message_key", Text, primary_key=True),
    Column("workspace_id", Text, nullable=True),
    Column("lead_id", UUID(as_uuid=True), nullable=True),
    Column("outcome", Text, nullable=False),  # replied | out_of_office | unmatched | ambiguous | ignored
    Column("detail", Text, nullable=True),
    _ts("received_at", nullable=False),  # when it was handled (its record is kept 30 days from then)
    Index("ix_inbox_messages_age", "inbox", "received_at"),
)

# The simulated provider's LinkedIn inbox (what a remote provider keeps): messages leads sent to an account (0004).
sim_linkedin_inbox = Table(
    "sim_linkedin_inbox",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("profile_url", Text, nullable=True),
    Column("text", Text, nullable=False),
    _ts("sent_at", nullable=False),
    Index("ix_sim_linkedin_inbox", "account_id", "sent_at"),
)

SERVICE_TABLES = [
    accounts,
    reconnect_emails,
    campaigns,
    campaign_workers,
    leases,
    leads,
    audience_members,
    searches,
    enrollments,
    lead_locks,
    texts,
    videos,
    timers,
    sends,
    blocklist,
    suppressions,
    seen_webhooks,
    idempotency_keys,
    sim_linkedin_requests,
    sim_email_requests,
]


# -- pacing counts ---------------------------------------------------------------------------------


COUNTED_STATES = ("pending", "sent", "unknown")
"""Send states that may have reached the lead, so they use up the day's quota (an intent counts at once)."""


def sent_by_account(account_id: uuid.UUID, action: str) -> ColumnElement[bool]:
    """Real sends of ``action`` by a LinkedIn account, across all of its campaigns."""
    return (
        (sends.c.account_id == account_id)
        & (sends.c.action == action)
        & sends.c.dry_run.is_(False)
        & sends.c.state.in_(COUNTED_STATES)
    )


def sent_by_mailbox(workspace_id: str, sender: str, *, dry_run: bool) -> ColumnElement[bool]:
    """Emails from a mailbox of the workspace, across all campaigns. A dry run counts its own (rehearsal)
    records and real sends count real ones, so a rehearsal paces like the real thing without using up the
    mailbox's real quota."""
    return (
        (sends.c.workspace_id == workspace_id)
        & (sends.c.sender == sender)
        & (sends.c.action == "email")
        & (sends.c.dry_run.is_(dry_run))
        & sends.c.state.in_(COUNTED_STATES)
    )


async def lock_mailbox(conn: AsyncConnection, workspace_id: str, sender: str) -> None:
    """Serialise email steps of one mailbox until the transaction ends: steps of different LinkedIn accounts
    (which lock only their own account row) share the mailbox's quota and must not both take its last send."""
    key = f"leadstream-mailbox:{workspace_id}:{sender}"
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def count_sends(
    conn: AsyncConnection, which: ColumnElement[bool], start: datetime, end: datetime
) -> tuple[int, datetime | None]:
    """How many sends match ``which`` in [start, end), and when the latest of them was."""
    stmt = select(func.count(), func.max(sends.c.sent_at)).where(which, sends.c.sent_at >= start, sends.c.sent_at < end)
    row: Any = (await conn.execute(stmt)).one()
    return int(row[0]), row[1]
