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
