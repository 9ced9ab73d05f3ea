"""Enrichment's event handlers: decode -> domain -> store + outbox. Thin on purpose."""

from __future__ import annotations

from typing import Any

from leadstream_schemas import Envelope, LeadDiscovered, LeadEnrichmentFailed
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.runtime.consumer import HandlerContext, RetryLater
from services.runtime.providers import ProviderError, RateLimited

from . import domain
from .adapters import EmailFinder, LeadRef, ProfileData, ProfileProvider
from .store import profile_cache


class EnrichmentHandlers:
    """Handlers with their adapters and settings."""

    def __init__(self, profiles: ProfileProvider, emails: EmailFinder, cache_days: int) -> None:
        self.profiles = profiles
        self.emails = emails
        self.cache_days = cache_days

    async def on_lead_discovered(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        """Enrich the profile and the email of a newly discovered lead."""
        lead = env.data
        ref = LeadRef(str(lead.lead_id), lead.linkedin_url, lead.full_name, lead.company, lead.email)
        key = domain.profile_key(ref)
        now = ctx.clock.now()
        row = (await ctx.conn.execute(select(profile_cache).where(profile_cache.c.profile_key == key))).first()
        if row is not None and domain.cache_is_fresh(row.enriched_at, now, self.cache_days):
            profile = ProfileData(row.profile)
        else:
            try:
                profile = await self.profiles.fetch_profile(ref)
            except RateLimited as exc:
                raise RetryLater(exc.retry_after_s, "profile provider rate limit") from exc
            except ProviderError as exc:
                if exc.transient:
                    raise
                ctx.emit(LeadEnrichmentFailed(lead_id=lead.lead_id, campaign_id=lead.campaign_id, stage="profile",
                                              reason="provider_error", detail=str(exc)))
                return
            stored: dict[str, Any] = ProfileData(profile.fields).fields
            await ctx.conn.execute(
                insert(profile_cache)
                .values(profile_key=key, profile=_jsonable(stored), enriched_at=now)
                .on_conflict_do_update(index_elements=["profile_key"], set_={"profile": _jsonable(stored),
                                                                             "enriched_at": now})
            )
        ctx.emit(domain.profile_event(lead.lead_id, lead.campaign_id, profile, self.profiles.name))
        try:
            result = await self.emails.find_email(ref, profile)
        except RateLimited as exc:
            raise RetryLater(exc.retry_after_s, "email finder rate limit") from exc
        except ProviderError as exc:
            if exc.transient:
                raise
            ctx.emit(LeadEnrichmentFailed(lead_id=lead.lead_id, campaign_id=lead.campaign_id, stage="email",
                                          reason="provider_error", detail=str(exc)))
            return
        ctx.emit(domain.email_event(lead.lead_id, lead.campaign_id, result, self.emails.name))


def _jsonable(value: Any) -> Any:
    """Dates to ISO strings so the cache row is plain JSON."""
    import json

    return json.loads(json.dumps(value, default=str))
