"""What the console reads from the other services' public APIs, as typed models (the fields it shows).

These mirror the projection's response models without importing them: the console talks to the
services over HTTP only. Unknown fields are ignored, so a service may add fields freely.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OnboardingStep(_In):
    key: str
    label: str
    done: bool
    done_at: datetime | None = None


class Onboarding(_In):
    workspace_id: str
    steps: list[OnboardingStep]
    complete: bool
    next_step: str | None = None


class InboxItem(_In):
    kind: str
    severity: str
    title: str
    detail: str | None = None
    campaign_id: UUID | None = None
    account_id: UUID | None = None
    count: int = 1


class Inbox(_In):
    items: list[InboxItem]


class Summary(_In):
    campaign_id: UUID
    name: str | None = None
    state: str
    leads: int = 0
    queued: int = 0
    in_progress: int = 0
    resolved: int = 0
    invited_leads: int = 0
    invites_sent: int = 0
    accepted: int = 0
    waiting_acceptance: int = 0
    messages_sent: int = 0
    emails_sent: int = 0
    contacted: int = 0
    failed_actions: int = 0
    skipped_actions: int = 0
    replied: int = 0
    completed: int = 0
    unsubscribed: int = 0
    videos_generated: int = 0
    drafts_pending: int = 0
    acceptance_rate: float = 0.0
    reply_rate: float = 0.0


class Campaign(_In):
    campaign_id: UUID
    name: str | None = None
    audience_type: str | None = None
    audience_ref: str | None = None
    workflow: str | None = None
    pace: str | None = None
    video: bool = False
    state: str
    state_detail: str | None = None
    next_run_at: datetime | None = None
    created_at: datetime | None = None
    launched_at: datetime | None = None
    summary: Summary


class CampaignPage(_In):
    items: list[Campaign]
    next: str | None = None


class ActivityItem(_In):
    lead_id: UUID
    name: str | None = None
    campaign_id: UUID
    campaign_name: str | None = None
    category: str
    workflow_stage: str
    at: datetime | None = None


class Activity(_In):
    counts: dict[str, int]
    items: list[ActivityItem]


class Home(_In):
    campaigns_total: int
    active_campaigns: int
    leads_total: int
    recent_campaigns: list[Campaign]
    active: list[Campaign]
    activity: Activity
    onboarding: Onboarding | None = None
    inbox: Inbox | None = None


class SeriesDay(_In):
    day: date
    invites: int = 0
    acceptances: int = 0
    messages: int = 0
    emails: int = 0
    replies: int = 0


class Series(_In):
    campaign_id: UUID
    timezone: str
    days: list[SeriesDay]


class StageCount(_In):
    stage: str
    label: str
    count: int


class Stages(_In):
    campaign_id: UUID
    stages: list[StageCount]


class ResultRow(_In):
    lead_id: UUID
    name: str | None = None
    linkedin_url: str | None = None
    headline: str | None = None
    company: str | None = None
    status: str
    workflow_stage: str
    workflow_stage_label: str
    video_url: str | None = None
    last_event_at: datetime | None = None


class ResultPage(_In):
    items: list[ResultRow]
    next: str | None = None


class LeadCampaign(_In):
    campaign_id: UUID
    campaign_name: str | None = None
    status: str
    workflow_stage: str | None = None
    workflow_stage_label: str | None = None
    video_url: str | None = None
    last_event_at: datetime | None = None


class Post(_In):
    text: str
    topic: str | None = None
    posted_on: date | None = None
    url: str | None = None
    kind: str = "post"


class Position(_In):
    title: str
    company: str
    started_on: date | None = None
    ended_on: date | None = None


class Milestone(_In):
    kind: str
    detail: str
    occurred_on: date | None = None


class LeadProfile(_In):
    role: str | None = None
    company_name: str | None = None
    company_size: str | None = None
    company_industry: str | None = None
    city: str | None = None
    recent_posts: list[Post] = Field(default_factory=list)
    work_history: list[Position] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    company_milestones: list[Milestone] = Field(default_factory=list)


class Hook(_In):
    kind: str | None = None
    detail: str | None = None
    reason: str | None = None
    fallback: bool = False


class OutreachStep(_In):
    campaign_id: UUID | None = None
    campaign_name: str | None = None
    step_id: str
    channel: str | None = None
    draft_id: str | None = None
    text: str
    subject: str | None = None
    hook: Hook
    char_limit: int | None = None
    needs_review: bool = False
    review_state: str
    generated_at: datetime
    reviewed_at: datetime | None = None
    rejection_reason: str | None = None
    drafts: int = 1


class Lead(_In):
    lead_id: UUID
    name: str | None = None
    headline: str | None = None
    company: str | None = None
    linkedin_url: str | None = None
    location: str | None = None
    email: str | None = None
    email_status: str | None = None
    signal: str | None = None
    source: str | None = None
    pipeline_stage: str
    pipeline_rank: int
    workflow_stage: str | None = None
    workflow_stage_label: str | None = None
    video_url: str | None = None
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    events: int = 0
    campaigns: list[LeadCampaign] = Field(default_factory=list)
    profile: LeadProfile | None = None
    outreach: list[OutreachStep] = Field(default_factory=list)


class TimelineItem(_In):
    event_id: UUID
    type: str
    time: datetime
    summary: str
    campaign_id: UUID | None = None
    campaign_name: str | None = None
    account_name: str | None = None


class Timeline(_In):
    lead_id: UUID
    items: list[TimelineItem]
    next: str | None = None


class AccountCampaign(_In):
    campaign_id: UUID
    name: str | None = None
    state: str
    leased: bool = False


class Account(_In):
    account_id: UUID
    name: str
    provider: str | None = None
    status: str | None = None
    health: str
    reason: str | None = None
    status_changed_at: datetime | None = None
    connected_at: datetime | None = None
    campaigns: list[AccountCampaign] = Field(default_factory=list)


class Accounts(_In):
    items: list[Account]


# -- discovery ------------------------------------------------------------------------------------


class FitSignal(_In):
    kind: str
    detail: str
    observed_on: date | None = None


class Match(_In):
    full_name: str
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    location: str | None = None
    linkedin_url: str
    lead_id: UUID
    already_known: bool = False
    fit_signals: list[FitSignal] = Field(default_factory=list)


class SearchPreview(_In):
    kind: str
    total: int | None = None
    matches: list[Match]
    has_more: bool = False


class SearchCreated(_In):
    search_id: UUID
    source_group_id: UUID
    status: str


class Search(_In):
    search_id: UUID
    source_group_id: UUID
    name: str
    kind: str
    criteria: dict[str, object] = Field(default_factory=dict)
    target_count: int
    status: str
    finish_reason: str | None = None
    pages: int = 0
    found: int = 0
    new_leads: int = 0
    duplicates: int = 0
    invalid: int = 0
    members: int = 0
    last_error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class SearchList(_In):
    items: list[Search]


class SourceGroup(_In):
    source_group_id: UUID
    name: str
    kind: str
    search_id: UUID | None = None
    size: int = 0
    new_leads: int = 0
    created_at: datetime


class SourceGroupList(_In):
    items: list[SourceGroup]


class Member(_In):
    lead_id: UUID
    linkedin_url: str | None = None
    email: str | None = None
    full_name: str | None = None
    title: str | None = None
    company: str | None = None
    location: str | None = None
    new: bool = True
    fit_signals: list[FitSignal] = Field(default_factory=list)
    added_at: datetime


class MemberPage(_In):
    items: list[Member]
    next_after: int | None = None


class RowError(_In):
    row: int
    column: str
    message: str


class DuplicateRow(_In):
    row: int
    lead_id: str
    reason: str


class ImportReport(_In):
    import_id: UUID
    source_group_id: UUID
    rows: int
    imported: int
    rejected: int
    duplicates: int
    errors: list[RowError] = Field(default_factory=list)
    duplicate_rows: list[DuplicateRow] = Field(default_factory=list)
    ignored_columns: list[str] = Field(default_factory=list)
    errors_truncated: bool = False
    truncated_at_row: int | None = None


class LeadAdded(_In):
    lead_id: UUID
    source_group_id: UUID
    created: bool
    duplicate: bool


class Suggestion(_In):
    signal_type: str
    label: str
    phrasing: str
    why: str


class Suggestions(_In):
    suggestions: list[Suggestion]
    location: str | None = None
    lookback_days: int | None = None
    custom_signal: str | None = None


# -- messaging ------------------------------------------------------------------------------------


class Draft(_In):
    draft_id: UUID
    campaign_id: UUID
    lead_id: UUID
    step_id: str
    channel: str
    status: str
    text: str
    subject: str | None = None
    length: int
    hook: Hook
    template: str | None = None
    char_limit: int
    limit_label: str = ""
    subject_limit: int | None = None
    needs_review: bool = False
    attempt: int = 1
    replaces: UUID | None = None
    post_url: str | None = None
    reason: str | None = None
    created_at: datetime
    decided_at: datetime | None = None


class Drafts(_In):
    items: list[Draft]


class Rejected(_In):
    rejected: Draft
    replacement: Draft | None = None


class BulkApproved(_In):
    approved: list[Draft]
    skipped: int = 0


class PreviewText(_In):
    step_id: str
    channel: str
    text: str
    subject: str | None = None
    length: int
    char_limit: int
    limit_label: str
    over_limit: bool = False
    hook: Hook
    template: str


class PreviewLead(_In):
    lead_id: UUID | None = None
    name: str | None = None
    enriched: bool = False
    steps: list[PreviewText]


class MessagePreviews(_In):
    leads: list[PreviewLead]


class Template(_In):
    template_id: str
    name: str
    category: str
    body: str
    subject: str | None = None
    builtin: bool = False
    variables: list[str] = Field(default_factory=list)


class Templates(_In):
    items: list[Template]


# -- outreach -------------------------------------------------------------------------------------


class GraphStep(_In):
    id: str
    action: str
    note: bool = False
    mode: str | None = None
    needs_text: bool = False
    channel: str | None = None


class GraphEdge(_In):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    condition: str = "always"
    delay_minutes: int = 0


class Graph(_In):
    preset: str | None = None
    start: str
    steps: list[GraphStep]
    edges: list[GraphEdge]
    warnings: list[str] = Field(default_factory=list)
    unreachable: list[str] = Field(default_factory=list)


class CheckedWorkflow(_In):
    graph: Graph


class Preset(_In):
    name: str
    title: str
    description: str
    graph: Graph


class Presets(_In):
    items: list[Preset]


class OutreachAccount(_In):
    account_id: UUID
    provider: str
    display_name: str | None = None
    status: str
    healthy: bool
    sender_email: str | None = None
    sender_email_verified: bool = False
    email_dry_run: bool | None = None


class ConnectedAccount(OutreachAccount):
    """A new account (``POST /v1/accounts``): ``auth_url`` is the hosted authorisation page while it is pending."""

    auth_url: str | None = None


class OutreachAccounts(_In):
    items: list[OutreachAccount]


class AuthLink(_In):
    account_id: UUID
    auth_url: str


class Worker(_In):
    worker_id: UUID
    account_id: UUID
    state: str


class Audience(_In):
    type: str
    ref: str


class Strategy(_In):
    """A campaign's messaging strategy (outreach's ``Strategy``): the whole profile, since the launch summary sends
    it on to messaging's previews as it is (their ``strategy`` refuses fields it does not know: add none here that
    messaging's ``StrategyIn`` lacks)."""

    offer: str = ""
    proof: str = ""
    tone: str = "friendly"
    call_to_action: str = ""
    template: str | None = None
    review: bool = False
    invite_note: bool = True
    personalise: bool = True


class EmailFallback(_In):
    """The email fallback of a campaign's delivery: its verified sender and default subject and body."""

    sender_email: str
    subject: str = ""
    body: str = ""


class Delivery(_In):
    """How a campaign sends (outreach's ``Delivery``): the pace in words and its invites per day, active days and
    hours in its time zone, the email fallback and whether emails are dry runs."""

    pace_label: str | None = None
    daily_cap: int | None = None
    active_days: list[str] = Field(default_factory=list)
    start_hour: int = 9
    end_hour: int = 17
    timezone: str = "UTC"
    email_fallback: EmailFallback | None = None
    dry_run: bool = False


class VideoSegment(_In):
    """A segment of a campaign's video: the variable ``name`` filled from the lead's ``field``, else ``fallback``."""

    name: str | None = None
    field: str
    fallback: str | None = None


class Video(_In):
    """A campaign's personalised video template (outreach's ``VideoIn``; its other fields are not shown)."""

    template_id: str
    segments: list[VideoSegment] = Field(default_factory=list)


class CampaignDetail(_In):
    campaign_id: UUID
    name: str
    state: str
    message: str | None = None
    pause_reason: str | None = None
    audience: Audience
    pace: str | None = None
    next_run_at: datetime | None = None
    account_ids: list[UUID] = Field(default_factory=list)
    workflow: Graph
    warnings: list[str] = Field(default_factory=list)
    strategy: Strategy
    delivery: Delivery
    video: Video | None = None
    skipped_accounts: dict[str, str] = Field(default_factory=dict)  # account id -> why it does not send
    workers: list[Worker] = Field(default_factory=list)
    leads: dict[str, int] = Field(default_factory=dict)  # "enrolled" and a count per lead state (only those in use)
    launched_at: datetime | None = None


class PlanAccount(_In):
    account_id: UUID
    name: str | None = None
    active: bool
    reason: str | None = None
    leads: int = 0


class PlanLead(_In):
    lead_id: UUID
    name: str | None = None
    company: str | None = None
    account_id: UUID | None = None
    status: str
    detail: str | None = None


class PlanCounts(_In):
    total: int = 0
    ready: int = 0
    waiting_enrichment: int = 0
    duplicates: int = 0


class LaunchPlan(_In):
    campaign_id: UUID
    state: str
    accounts: list[PlanAccount]
    leads: PlanCounts
    assignments: list[PlanLead]
    audience_growing: bool = False


class CatalogPlan(_In):
    name: str
    label: str
    description: str
    features: list[str]


class CatalogAddOn(_In):
    name: str
    label: str
    description: str
    feature: str


class WorkspacePlan(_In):
    workspace_id: str
    plan: str
    plan_label: str
    add_ons: list[str]
    features: list[str]
    plans: list[CatalogPlan]
    available_add_ons: list[CatalogAddOn]

    def allows(self, feature: str) -> bool:
        """Whether the plan and add-ons include ``feature``."""
        return feature in self.features


class BlockEntry(_In):
    kind: str  # domain, email or profile_url
    value: str  # as outreach stored it (normalised: lower case, a profile URL without its query)


class Blocklist(_In):
    items: list[BlockEntry]
    next: str | None = None


class Suppression(_In):
    kind: str  # lead (its id) or email
    value: str
    reason: str  # unsubscribed, bounced or manual


class Suppressions(_In):
    items: list[Suppression]
    next: str | None = None
