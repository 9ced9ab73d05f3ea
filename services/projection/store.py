"""The projection's tables. The live views are in schema ``projection``; a replay builds the same tables
in ``projection_<name>`` and a promotion renames schemas, so readers always use the stable name.

Every view row is keyed by workspace. Columns ending in ``_key`` are last-writer-wins ordering keys
(``time|type rank|event id``, compared bytewise: collation "C"). Generated columns derive what the API
shows (display name, effective stage, status) from the stored facts, so they need no maintenance.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.types import TypeEngine

from services.runtime.db import service_metadata

from .domain import MergeSpec, TimelineRow
from .rebuilds import REPLAY_PREFIX, SCHEMA

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """``schema`` if it is a safe unquoted identifier (it is interpolated into SQL), else ValueError."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lowercase letters, digits and underscores")
    return schema


def replay_schema(name: str) -> str:
    """The schema a replay named ``name`` builds into."""
    if not re.match(r"^[a-z0-9_]{1,40}$", name):
        raise ValueError(f"invalid replay name {name!r}: use 1-40 lowercase letters, digits and underscores")
    return REPLAY_PREFIX + name


def _key() -> Text:
    return Text(collation="C")


def _flag(name: str) -> Column[bool]:
    return Column(name, Boolean, nullable=False, server_default=text("false"))


def _count(name: str) -> Column[int]:
    return Column(name, Integer, nullable=False, server_default=text("0"))


# Rows updated by nearly every batch keep free space so updates stay on their page (HOT, no index writes).
_HOT = {"fillfactor": "70"}

_STAGE_SQL = (
    "CASE WHEN replied THEN 'replied' WHEN unsubscribed THEN 'unsubscribed' WHEN completed THEN 'completed' "
    "ELSE label END"
)


SUMMARY_COUNTS: tuple[str, ...] = (
    "leads",
    "queued",
    "in_progress",
    "resolved",
    "invited_leads",
    "invites_sent",
    "accepted",
    "waiting_acceptance",
    "messages_sent",
    "emails_sent",
    "comments_posted",
    "likes",
    "contacted",
    "failed_actions",
    "skipped_actions",
    "replied",
    "completed",
    "unsubscribed",
    "videos_generated",
    "drafts_pending",
)
"""The counters of a campaign summary, in column order."""


@dataclass(frozen=True)
class Views:
    """The view tables of one schema (the live one or a replay's)."""

    schema: str
    timeline: Table
    lead_state: Table
    lead_campaign: Table
    lead_groups: Table
    campaigns: Table
    campaign_summary: Table
    accounts: Table
    account_campaigns: Table
    searches: Table
    offsets: Table
    seen_events: Table
    replay_info: Table
    changes: Table
    """The live views' change log (what the change stream serves); a rebuild leaves it empty."""

    def table(self, spec: MergeSpec) -> Table:
        """The table a merge spec writes."""
        table: Table = getattr(self, spec.table)
        return table

    @property
    def checksummed(self) -> tuple[Table, ...]:
        """The tables whose content is the views (what ``views checksum`` digests)."""
        return (
            self.timeline,
            self.lead_state,
            self.lead_campaign,
            self.lead_groups,
            self.campaigns,
            self.campaign_summary,
            self.accounts,
            self.account_campaigns,
            self.searches,
        )


def build_views(metadata: MetaData) -> Views:
    """Define every view table in ``metadata`` (whose ``schema`` decides where they live)."""
    timeline = Table(
        "timeline",
        metadata,
        # The key is the read order of a lead's timeline; event ids are unique through seen_events.
        Column("workspace_id", Text, primary_key=True),
        Column("lead_id", UUID(as_uuid=True), primary_key=True),
        Column("event_time", DateTime(timezone=True), primary_key=True),
        Column("type_rank", SmallInteger, primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("event_type", Text, nullable=False),
        Column("campaign_id", UUID(as_uuid=True)),
        Column("account_id", UUID(as_uuid=True)),
        Column("step_id", Text),
        Column("summary", Text, nullable=False),
        Column("detail", Text),  # JSON, for the few types the lead page reads more of (domain.DETAIL_TYPES)
    )
    lead_state = Table(
        "lead_state",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("lead_id", UUID(as_uuid=True), primary_key=True),
        Column("disc_key", _key()),
        Column("source", Text),
        Column("search_id", UUID(as_uuid=True)),
        Column("source_group_id", UUID(as_uuid=True)),
        Column("disc_name", Text),
        Column("disc_title", Text),
        Column("disc_company", Text),
        Column("disc_linkedin_url", Text),
        Column("disc_location", Text),
        Column("signal", Text),
        Column("prof_key", _key()),
        Column("prof_name", Text),
        Column("prof_headline", Text),
        Column("prof_company", Text),
        Column("prof_linkedin_url", Text),
        Column("prof_city", Text),
        Column("email_key", _key()),
        Column("email", Text),
        Column("email_status", Text),
        Column("label_key", _key()),
        Column("label", Text),
        Column("video_key", _key()),
        Column("video_url", Text),
        Column("pipeline_rank", SmallInteger),
        Column("last_event_at", DateTime(timezone=True)),
        Column("first_event_at", DateTime(timezone=True)),
        _flag("replied"),
        _flag("completed"),
        _flag("unsubscribed"),
        _count("event_count"),
        Column("name", Text, Computed("coalesce(prof_name, disc_name)", persisted=True)),
        Column("sort_name", Text, Computed("lower(coalesce(prof_name, disc_name, ''))", persisted=True)),
        Column("headline", Text, Computed("coalesce(prof_headline, disc_title)", persisted=True)),
        Column("company", Text, Computed("coalesce(prof_company, disc_company)", persisted=True)),
        Column("linkedin_url", Text, Computed("coalesce(prof_linkedin_url, disc_linkedin_url)", persisted=True)),
        Column("stage", Text, Computed(_STAGE_SQL, persisted=True)),
        postgresql_with=_HOT,
    )
    lead_campaign = Table(
        "lead_campaign",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("campaign_id", UUID(as_uuid=True), primary_key=True),
        Column("lead_id", UUID(as_uuid=True), primary_key=True),
        Column("label_key", _key()),
        Column("label", Text),
        Column("enroll_key", _key()),
        Column("account_id", UUID(as_uuid=True)),
        Column("video_key", _key()),
        Column("video_url", Text),
        Column("invite_variant_key", _key()),
        Column("invite_step", Text),
        Column("invite_variant", Text),
        Column("message_variant_key", _key()),
        Column("message_step", Text),
        Column("message_variant", Text),
        Column("last_event_at", DateTime(timezone=True)),
        Column("first_event_at", DateTime(timezone=True)),
        _flag("enrolled"),
        _flag("invite_accepted"),
        _flag("replied"),
        _flag("completed"),
        _flag("unsubscribed"),
        _count("invites_sent"),
        _count("messages_sent"),
        _count("emails_sent"),
        _count("comments_posted"),
        _count("likes"),
        _count("failed_actions"),
        _count("skipped_actions"),
        _count("videos_generated"),
        _count("drafts_review"),
        _count("drafts_decided"),
        _count("event_count"),
        Column("stage", Text, Computed(_STAGE_SQL, persisted=True)),
        Column(
            "status",
            Text,
            Computed(
                "CASE WHEN replied THEN 'replied' WHEN unsubscribed THEN 'unsubscribed' "
                "WHEN completed THEN 'completed' WHEN enrolled THEN 'in_progress' ELSE 'queued' END",
                persisted=True,
            ),
        ),
        Column("done", Boolean, Computed("replied OR completed OR unsubscribed", persisted=True)),
        Index(None, "lead_id"),
        postgresql_with=_HOT,
    )
    lead_groups = Table(
        "lead_groups",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("source_group_id", UUID(as_uuid=True), primary_key=True),
        Column("lead_id", UUID(as_uuid=True), primary_key=True),
        Index(None, "lead_id"),
    )
    campaigns = Table(
        "campaigns",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("campaign_id", UUID(as_uuid=True), primary_key=True),
        Column("created_key", _key()),
        Column("name", Text),
        Column("audience_type", Text),
        Column("audience_ref", Text),
        Column("workflow", Text),
        Column("pace", Text),
        Column("delivery", JSONB),
        Column("video", Boolean),
        Column("account_count", Integer),
        Column("parent_campaign_id", UUID(as_uuid=True)),
        Column("created_at", DateTime(timezone=True)),
        Column("state_key", _key()),
        Column("state", Text),
        Column("state_detail", Text),
        Column("schedule_key", _key()),
        Column("next_run_at", DateTime(timezone=True)),
        Column("launch_key", _key()),
        Column("launched_at", DateTime(timezone=True)),
        Column("last_event_at", DateTime(timezone=True)),
        _flag("deleted"),
        Column(
            "effective_state",
            Text,
            Computed("CASE WHEN deleted THEN 'deleted' ELSE coalesce(state, 'pending') END", persisted=True),
        ),
    )
    campaign_summary = Table(
        "campaign_summary",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("campaign_id", UUID(as_uuid=True), primary_key=True),
        *[_count(c) for c in SUMMARY_COUNTS],
        postgresql_with=_HOT,
    )
    accounts = Table(
        "accounts",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("account_id", UUID(as_uuid=True), primary_key=True),
        Column("profile_key", _key()),
        Column("display_name", Text),
        Column("provider", Text),
        Column("status_key", _key()),
        Column("status", Text),
        Column("healthy", Boolean),
        Column("status_changed_at", DateTime(timezone=True)),
        Column("connected_at", DateTime(timezone=True)),
        _flag("deleted"),
    )
    account_campaigns = Table(
        "account_campaigns",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("account_id", UUID(as_uuid=True), primary_key=True),
        Column("campaign_id", UUID(as_uuid=True), primary_key=True),
        Column("lease_key", _key()),
        Column("leased", Boolean),
        _flag("assigned"),
    )
    searches = Table(
        "searches",
        metadata,
        Column("workspace_id", Text, primary_key=True),
        Column("search_id", UUID(as_uuid=True), primary_key=True),
        Column("started_key", _key()),
        Column("name", Text),
        Column("kind", Text),
        Column("source_group_id", UUID(as_uuid=True)),
        Column("target_count", Integer),
        Column("status_key", _key()),
        Column("status", Text),
        Column("next_run_at", Text),
        Column("pages", Integer),
        Column("total_new", Integer),
    )
    offsets = Table(
        "offsets",
        metadata,
        Column("topic", Text, primary_key=True),
        Column("partition", Integer, primary_key=True),
        Column("next_offset", BigInteger),
    )
    seen_events = Table("seen_events", metadata, Column("event_id", UUID(as_uuid=True), primary_key=True))
    replay_info = Table(  # also holds CLUSTER_KEY: the Kafka cluster the stored offsets belong to
        "replay_info", metadata, Column("key", Text, primary_key=True), Column("value", JSONB, nullable=False)
    )
    changes = Table(
        "changes",
        metadata,
        # Written under the apply lock, so sequence order is commit order: a reader that saw a seq
        # can never later find a smaller one committed (a rolled-back batch only leaves a hole).
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("workspace_id", Text, nullable=False),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("kind", Text, nullable=False),
        Column("lead_id", UUID(as_uuid=True)),
        Column("campaign_id", UUID(as_uuid=True)),
        Column("account_id", UUID(as_uuid=True)),
        Column("search_id", UUID(as_uuid=True)),
        Index(None, "workspace_id", "seq"),
    )
    return Views(
        schema=str(metadata.schema),
        timeline=timeline,
        lead_state=lead_state,
        lead_campaign=lead_campaign,
        lead_groups=lead_groups,
        campaigns=campaigns,
        campaign_summary=campaign_summary,
        accounts=accounts,
        account_campaigns=account_campaigns,
        searches=searches,
        offsets=offsets,
        seen_events=seen_events,
        replay_info=replay_info,
        changes=changes,
    )


metadata, runtime_tables = service_metadata(SCHEMA)
views = build_views(metadata)


def views_for(schema: str) -> Views:
    """The view tables of another schema (a replay's), for reading or checksumming."""
    if schema == SCHEMA:
        return views
    md, _ = service_metadata(check_schema_name(schema))
    return build_views(md)


# -- SQL for set-based writes (asyncpg, array parameters) ---------------------------------------

_PG_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (UUID, "uuid"),
    (JSONB, "jsonb"),
    (DateTime, "timestamptz"),
    (BigInteger, "bigint"),
    (SmallInteger, "smallint"),
    (Integer, "integer"),
    (Boolean, "boolean"),
    (Text, "text"),
)


def pg_type(column: Column[Any]) -> str:
    """The Postgres type name of a column (for ``$n::type[]`` casts)."""
    for cls, name in _PG_TYPES:
        if isinstance(column.type, cls):
            return name
    raise TypeError(f"no Postgres type mapping for {column.name}: {column.type!r}")


def _q(schema: str, table: str) -> str:
    return f'"{check_schema_name(schema)}"."{table}"'


def unnest_select(table: Table, columns: tuple[str, ...]) -> str:
    """``SELECT * FROM unnest($1::t1[], ...)`` for ``columns`` of ``table``."""
    casts = ", ".join(f"${i + 1}::{pg_type(table.c[c])}[]" for i, c in enumerate(columns))
    return f"SELECT * FROM unnest({casts})"


def stage_table(spec: MergeSpec) -> str:
    """The session's temporary table that a batch's reduced rows of ``spec`` are copied into."""
    return f"projection_stage_{spec.table}"


def stage_ddl(spec: MergeSpec, table: Table) -> str:
    """Creates :func:`stage_table` when the session has none.

    The upsert empties it (``DELETE ... RETURNING``), so rows never outlive their statement even
    inside an outer transaction; ``ON COMMIT DELETE ROWS`` resets its storage at every commit.
    """
    cols = ", ".join(f"{c} {pg_type(table.c[c])}" for c in spec.columns)
    return f"CREATE TEMP TABLE IF NOT EXISTS {stage_table(spec)} ({cols}) ON COMMIT DELETE ROWS"


def upsert_sql(spec: MergeSpec, table: Table, *, staged: bool = False) -> str:
    """An upsert of reduced patches merging by the rules of ``spec``.

    The rows come from one array parameter per column, or (``staged``) from :func:`stage_table`,
    which the statement empties.
    """
    cols = spec.columns
    sets: list[str] = []
    for key_col, values in spec.registers.items():
        newer = (
            f'EXCLUDED.{key_col} IS NOT NULL AND (t.{key_col} IS NULL OR EXCLUDED.{key_col} COLLATE "C" > '
            f't.{key_col} COLLATE "C")'
        )
        for c in (*values, key_col):
            sets.append(f"{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE t.{c} END")
    sets += [f"{c} = GREATEST(t.{c}, EXCLUDED.{c})" for c in spec.maximum]
    sets += [f"{c} = LEAST(t.{c}, EXCLUDED.{c})" for c in spec.minimum]
    sets += [f"{c} = t.{c} OR EXCLUDED.{c}" for c in spec.any]
    sets += [f"{c} = t.{c} + EXCLUDED.{c}" for c in spec.total]
    target = f"INSERT INTO {_q(str(table.schema), table.name)} AS t ({', '.join(cols)}) "
    if staged:
        drain = f"WITH staged AS (DELETE FROM pg_temp.{stage_table(spec)} RETURNING *) "
        target = f"{drain}{target}SELECT {', '.join(cols)} FROM staged "
    else:
        target += f"{unnest_select(table, cols)} "
    return f"{target}ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {', '.join(sets)}"


TIMELINE_COLUMNS: tuple[str, ...] = TimelineRow._fields


@dataclass(frozen=True)
class WriteSql:
    """Every statement the batch applier runs against one schema (built once per schema)."""

    lock_id: int
    fence: str
    probe_seen: str
    """Which of the given event ids were applied before (run under the apply lock, then COPY the rest)."""
    insert_seen: str
    """Adds the given event ids, returning those that were not there yet (a small batch's one statement)."""
    create_stages: str
    """Creates the session's staging tables (one statement list, simple query protocol)."""
    upserts: dict[str, str]
    """Per view table: the upsert from array parameters (a few rows)."""
    staged_upserts: dict[str, str]
    """Per view table: the upsert from its staging table (many rows)."""
    insert_groups: str
    derive_membership: str
    refresh_summary: str
    """Recomputes the summaries of the given (workspace, campaign) pairs from all their lead rows."""
    summary_delta: str
    """Adds ($2 = 1) or takes away ($2 = -1) what the lead rows of the given leads count in their campaigns."""
    refresh_all_summaries: str
    store_offsets: str
    record_changes: str
    """Appends a batch's changes to the change log and notifies each workspace's listeners (at commit), naming
    the applying process ($8), its batch ($9) and the workspace's changed leads: see :func:`notice`."""


def write_sql(v: Views) -> WriteSql:
    """The applier's statements for the views of ``v``."""
    import zlib

    from .domain import SPECS

    s = v.schema
    counts = list(SUMMARY_COUNTS)
    aggregates = {
        "leads": "count(*)",
        "queued": "count(*) FILTER (WHERE NOT lc.enrolled AND NOT lc.done)",
        "in_progress": "count(*) FILTER (WHERE lc.enrolled AND NOT lc.done)",
        "resolved": "count(*) FILTER (WHERE ls.pipeline_rank >= 2)",
        "invited_leads": "count(*) FILTER (WHERE lc.invites_sent > 0)",
        "invites_sent": "sum(lc.invites_sent)",
        "accepted": "count(*) FILTER (WHERE lc.invite_accepted)",
        "waiting_acceptance": "count(*) FILTER (WHERE lc.invites_sent > 0 AND NOT lc.invite_accepted AND NOT lc.done)",
        "messages_sent": "sum(lc.messages_sent)",
        "emails_sent": "sum(lc.emails_sent)",
        "comments_posted": "sum(lc.comments_posted)",
        "likes": "sum(lc.likes)",
        "contacted": "count(*) FILTER (WHERE lc.invites_sent + lc.messages_sent + lc.emails_sent > 0)",
        "failed_actions": "sum(lc.failed_actions)",
        "skipped_actions": "sum(lc.skipped_actions)",
        "replied": "count(*) FILTER (WHERE lc.replied)",
        "completed": "count(*) FILTER (WHERE lc.completed AND NOT lc.replied)",
        "unsubscribed": "count(*) FILTER (WHERE lc.unsubscribed)",
        "videos_generated": "sum(lc.videos_generated)",
        "drafts_pending": "sum(lc.drafts_review - lc.drafts_decided)",
    }
    missing = set(counts) - set(aggregates)
    if missing:
        raise RuntimeError(f"no aggregate for summary columns {sorted(missing)}")
    summary_select = (
        f"INSERT INTO {_q(s, 'campaign_summary')} AS t (workspace_id, campaign_id, {', '.join(counts)}) "
        f"SELECT lc.workspace_id, lc.campaign_id, {', '.join(aggregates[c] for c in counts)} "
        f"FROM {_q(s, 'lead_campaign')} lc "
    )
    summary_rest = (
        f"LEFT JOIN {_q(s, 'lead_state')} ls ON ls.workspace_id = lc.workspace_id AND ls.lead_id = lc.lead_id "
        f"GROUP BY lc.workspace_id, lc.campaign_id ORDER BY 1, 2 "
        f"ON CONFLICT (workspace_id, campaign_id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in counts)}"
    )
    refresh = (
        f"WITH touched (workspace_id, campaign_id) AS (SELECT * FROM unnest($1::text[], $2::uuid[])) "
        f"{summary_select}JOIN touched USING (workspace_id, campaign_id) {summary_rest}"
    )
    # Every counter is a count or a sum over a campaign's lead rows, so a batch moves a summary by what its
    # leads' rows add after it minus what they added before it: run with $2 = -1 before the batch's writes and
    # $2 = 1 after them, it reads only the rows of the batch's leads (however large the campaign). Each row's
    # lead state is looked up by its key (a LATERAL subquery with LIMIT, which the planner does not turn into a
    # join): as a plain join, Postgres hashed the whole lead_state table for every statement while it was small
    # (below ~10,000 leads: a workspace's usual size), half of the statement's time (bench/results/NOTES.md).
    adds = ", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in counts)
    delta = (
        f"INSERT INTO {_q(s, 'campaign_summary')} AS t (workspace_id, campaign_id, {', '.join(counts)}) "
        f"SELECT lc.workspace_id, lc.campaign_id, "
        f"{', '.join(f'$2::integer * coalesce({aggregates[c]}, 0)' for c in counts)} "
        f"FROM {_q(s, 'lead_campaign')} lc "
        f"LEFT JOIN LATERAL (SELECT * FROM {_q(s, 'lead_state')} "
        f"WHERE workspace_id = lc.workspace_id AND lead_id = lc.lead_id LIMIT 1) ls ON true "
        f"WHERE lc.lead_id = ANY($1::uuid[]) "
        f"GROUP BY lc.workspace_id, lc.campaign_id ORDER BY 1, 2 "
        f"ON CONFLICT (workspace_id, campaign_id) DO UPDATE SET {adds}"
    )
    membership = (
        f"INSERT INTO {_q(s, 'lead_campaign')} (workspace_id, campaign_id, lead_id) "
        f"SELECT c.workspace_id, c.campaign_id, g.lead_id FROM {_q(s, 'campaigns')} c "
        f"JOIN {_q(s, 'lead_groups')} g ON g.workspace_id = c.workspace_id AND c.audience_type = 'source_group' "
        f"AND g.source_group_id::text = lower(c.audience_ref) "
        f"WHERE g.lead_id = ANY($1::uuid[]) OR c.campaign_id = ANY($2::uuid[]) "
        f"ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"
    )
    return WriteSql(
        lock_id=zlib.crc32(f"leadstream-projection-apply:{s}".encode()),
        fence=(
            f"SELECT topic, partition, next_offset FROM {_q(s, 'offsets')} "
            f"WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::integer[])) "
            f"ORDER BY topic, partition FOR UPDATE"
        ),
        probe_seen=f"SELECT event_id FROM {_q(s, 'seen_events')} WHERE event_id = ANY($1::uuid[])",
        insert_seen=(
            f"INSERT INTO {_q(s, 'seen_events')} (event_id) SELECT unnest($1::uuid[]) "
            f"ON CONFLICT DO NOTHING RETURNING event_id"
        ),
        create_stages="; ".join(stage_ddl(spec, v.table(spec)) for spec in SPECS),
        upserts={spec.table: upsert_sql(spec, v.table(spec)) for spec in SPECS},
        staged_upserts={spec.table: upsert_sql(spec, v.table(spec), staged=True) for spec in SPECS},
        insert_groups=(
            f"INSERT INTO {_q(s, 'lead_groups')} (workspace_id, source_group_id, lead_id) "
            f"SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING"
        ),
        derive_membership=membership,
        refresh_summary=refresh,
        summary_delta=delta,
        refresh_all_summaries=summary_select + summary_rest,
        store_offsets=(
            f"INSERT INTO {_q(s, 'offsets')} (topic, partition, next_offset) "
            f"SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[]) "
            f"ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
        ),
        record_changes=(
            f"WITH ins AS (INSERT INTO {_q(s, 'changes')} "
            f"(workspace_id, kind, lead_id, campaign_id, account_id, search_id) "
            f"SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[]) "
            f"RETURNING workspace_id, lead_id) "
            f"SELECT pg_notify($7, {notice_sql('workspace_id', '$8::text', '$9::bigint', 'lead_id')}) "
            f"FROM ins GROUP BY workspace_id"
        ),
    )


def changes_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which the applier of ``schema`` announces a workspace's new changes."""
    return f"leadstream.{check_schema_name(schema)}.changes"


@dataclass(frozen=True)
class Notice:
    """A commit's notification: its ``workspace``, the process (``origin``) and batch that applied it, and the
    workspace's ``leads`` that changed (None: not named, any may have)."""

    workspace: str
    origin: str | None = None
    batch: int = 0
    leads: frozenset[uuid.UUID] | None = None


NOTICE_LEADS_MAX = 50
"""Leads a notification names at most (a payload must stay under Postgres' 8,000 bytes); a batch that changed
more of one workspace's leads names none, and every watch of that workspace looks again."""


def notice(payload: str) -> Notice:
    """The :class:`Notice` of a notification's payload (:func:`notice_sql`'s JSON; a bare workspace id, as
    replicas before origins sent, is a notice of no origin that names no leads)."""
    if payload.startswith("{"):
        try:
            data = json.loads(payload)
            leads = data.get("l")
            named = None if leads is None else frozenset(uuid.UUID(lead) for lead in leads)
            return Notice(str(data["w"]), str(data["o"]), int(data["b"]), named)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return Notice(payload)


def notice_sql(workspace: str, origin: str, batch: str, lead: str) -> str:
    """The SQL expression of a notification's payload (see :func:`notice`), aggregating over the rows of one
    workspace's changes: ``workspace``, ``origin``, ``batch`` and ``lead`` are SQL expressions."""
    leads = (
        f"CASE WHEN count(DISTINCT {lead}) <= {NOTICE_LEADS_MAX} THEN "
        f"coalesce(array_agg(DISTINCT {lead}) FILTER (WHERE {lead} IS NOT NULL), '{{}}') END"
    )
    return f"json_build_object('w', {workspace}, 'o', {origin}, 'b', {batch}, 'l', {leads})::text"


CHANGES_PRUNED_KEY = "changes_pruned_through"
"""``replay_info`` key: the highest change seq deleted by pruning (a reader behind it missed changes)."""

CLUSTER_KEY = "kafka_cluster_id"
"""``replay_info`` key naming the Kafka cluster whose offsets the views' ``offsets`` table refers to."""
