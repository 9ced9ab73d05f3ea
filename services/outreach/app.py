"""Outreach wiring: settings -> providers -> timer runner, handlers, routes -> service."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from leadstream_schemas import (
    LEAD,
    SEARCH,
    LeadAddedToSourceGroup,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadErased,
    LeadPostMatched,
    LeadProfileEnriched,
    LeadUnsubscribed,
    MessageApproved,
    MessageEdited,
    MessageGenerated,
    MessageRejected,
    Replied,
    SearchFinished,
    SearchResumed,
    SearchStarted,
    VideoFailed,
    VideoGenerated,
)

from services.runtime.clock import Clock
from services.runtime.crash import CrashPoints
from services.runtime.links import allowed_hosts
from services.runtime.providers import SimulationProfile
from services.runtime.service import Service

from .accounts import AccountStatus
from .adapters import EmailSender, LinkedInProvider
from .adapters.http import HttpEmailSender, UnipileLinkedIn
from .adapters.simulated import LinkedInBehaviour, SimulatedEmailSender, SimulatedLinkedIn
from .adapters.smtp import SmtpEmailSender
from .api import build_router
from .campaigns import CampaignCommands
from .context import OutreachContext
from .erasure import on_lead_erased
from .handlers import OutreachHandlers
from .inbox import InboxPoller, mailbox_of
from .runner import Runner
from .senders import Senders
from .settings import OutreachSettings
from .sim_hosted import hosted_router
from .steps import StepExecutor
from .store import metadata, runtime_tables

MIGRATIONS = Path(__file__).parent / "migrations"


def build(
    settings: OutreachSettings | None = None,
    clock: Clock | None = None,
    linkedin: LinkedInProvider | None = None,
    email: EmailSender | None = None,
) -> Service:
    """The outreach service, ready to start. ``service.app.state.outreach`` is its :class:`OutreachContext`
    (tests step the timers with ``.runner.run_due_timers_once()``)."""
    settings = settings or OutreachSettings()
    clock = clock or settings.clock()
    service = Service(
        settings,
        metadata=metadata,
        tables=runtime_tables,
        migrations_dir=MIGRATIONS,
        clock=clock,
        title="leadstream outreach",
    )
    sim = SimulationProfile(seed=settings.simulated_seed, transient_error_rate=settings.sim_transient_error_rate)
    if linkedin is None:
        if settings.linkedin_provider == "http":
            linkedin = UnipileLinkedIn(
                settings.unipile_base_url,
                settings.unipile_api_key.get_secret_value(),
                timeout_s=settings.provider_timeout_s,
            )
        else:
            behaviour = LinkedInBehaviour(
                accept_rate=settings.sim_accept_rate,
                reply_rate=settings.sim_reply_rate,
                out_of_office_rate=settings.sim_out_of_office_rate,
                connected_rate=settings.sim_connected_rate,
                invite_limit_per_week=settings.sim_invite_limit_per_week,
                message_limit_per_week=settings.sim_message_limit_per_week,
            )
            linkedin = SimulatedLinkedIn(
                sim,
                behaviour,
                engine=service.engine,
                hosted_base_url=settings.base_url(),
                secret=settings.keys("linkedin_webhook_secret").signing,
            )
    if email is None:
        if settings.email_provider == "http":
            email = HttpEmailSender(
                settings.email_api_url, settings.email_api_key.get_secret_value(), timeout_s=settings.provider_timeout_s
            )
        elif settings.email_provider == "smtp":
            email = SmtpEmailSender.from_settings(settings, clock)
        else:
            email = SimulatedEmailSender(
                sim, engine=service.engine, verify_after=timedelta(seconds=settings.sim_sender_verify_after_s)
            )
    notification_sender = (
        settings.notification_sender
        or (settings.smtp_username if settings.email_provider == "smtp" and settings.smtp_username else "")
        or "no-reply@leadstream.invalid"
    )
    senders = Senders(settings, email, notification_sender)
    service.close_on_stop(linkedin, email)
    executor = StepExecutor(settings, linkedin, email, CrashPoints(settings.crash_at))
    runner = Runner(service, executor, settings, senders)
    ctx = OutreachContext(
        service=service,
        settings=settings,
        linkedin=linkedin,
        email=email,
        runner=runner,
        campaigns=CampaignCommands(service, dry_run=not settings.email_real_sends, wake=runner.wake),
        account_status=AccountStatus(
            email,
            real_sends=settings.email_real_sends,
            default_to=settings.reconnect_email_to,
            sender=notification_sender,
        ),
        senders=senders,
    )
    service.app.state.outreach = ctx
    h = OutreachHandlers(runner.wake, allowed_hosts(settings.link_allowed_hosts))
    service.consume(
        [LEAD.name, SEARCH.name],
        {
            LeadDiscovered: h.on_lead_discovered,
            LeadAddedToSourceGroup: h.on_added_to_source_group,
            LeadProfileEnriched: h.on_profile_enriched,
            LeadPostMatched: h.on_post_matched,
            LeadEmailEnriched: h.on_email_enriched,
            LeadEmailNotFound: h.on_email_not_found,
            LeadEnrichmentFailed: h.on_enrichment_failed,
            MessageGenerated: h.on_message_generated,
            MessageApproved: h.on_message_approved,
            MessageEdited: h.on_message_edited,
            MessageRejected: h.on_message_rejected,
            VideoGenerated: h.on_video_generated,
            VideoFailed: h.on_video_failed,
            Replied: h.on_replied,
            LeadUnsubscribed: h.on_unsubscribed,
            LeadErased: on_lead_erased,
            SearchStarted: h.on_search_started,
            SearchFinished: h.on_search_finished,
            SearchResumed: h.on_search_resumed,
        },
        # A finished search may finish its campaigns: only once the leads it found (the lead topic, partitions
        # handled side by side with the search topic's) are in their audiences, or late ones are never enrolled.
        after={SearchFinished: [LEAD.name]},
        # A reply stops its lead by who, where and when: its excerpt (personal) is never read here, so it stays
        # sealed and a reply costs no key lookup (a query of its own before the handler's transaction).
        sealed=[Replied],
    )
    service.include_router(build_router(ctx))
    if isinstance(linkedin, SimulatedLinkedIn):
        service.include_router(hosted_router(linkedin, settings.keys("linkedin_webhook_secret").signing))
    inbox = InboxPoller(service, settings, linkedin, mailbox_of(settings))
    service.app.state.inbox = inbox
    if settings.timer_loop_enabled:
        runner.timers.serve()
        runner.intents.serve()
        inbox.serve()
    return service


def context_of(service: Service) -> OutreachContext:
    """The outreach context of a built service (runner, commands, providers)."""
    ctx: OutreachContext = service.app.state.outreach
    return ctx
