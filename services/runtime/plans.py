"""Workspace plans and add-ons: which paid features a workspace may use.

The plan lives in the shared ``identity`` schema, beside the workspace's API tokens, because it is a fact
about the workspace rather than about one service's data: every service already resolves the token there
on each request, so any of them can check an entitlement with the same cached lookup and no call to
another service (outreach gates the email sender and video today; video or messaging could gate their
own features tomorrow without a new dependency). It is kept out of ``auth.py`` (tokens and scopes) in a
table and module of its own.

A workspace without a row is on the Starter plan without add-ons. The migration that adds the table
grandfathers every workspace that already had a token onto Scale with the Video add-on, so nothing an
existing workspace used stops working.

A feature the plan does not include is refused with a 403 problem ``plan_required`` that names the
request field, the feature and the upgrade that unlocks it; the console turns it into an explicit
upgrade action next to that field.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Security
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .auth import AdminWorkspace, ReadWorkspace, workspace_id
from .errors import Problem
from .identity import workspace_plans

PlanName = Literal["starter", "scale"]
AddOnName = Literal["video", "email_sender"]
Feature = Literal["video", "email_sender"]


@dataclass(frozen=True)
class PlanInfo:
    """A plan of the catalogue: its name, what it is called, and the features it includes."""

    name: str
    label: str
    description: str
    features: frozenset[str]


@dataclass(frozen=True)
class AddOnInfo:
    """An add-on of the catalogue: bought on top of any plan, it adds one feature."""

    name: str
    label: str
    description: str
    feature: str


PLANS: dict[str, PlanInfo] = {
    "starter": PlanInfo(
        "starter",
        "Starter",
        "LinkedIn outreach: lead discovery, campaigns, the Messaging Lab, every LinkedIn account you connect.",
        frozenset(),
    ),
    "scale": PlanInfo(
        "scale",
        "Scale",
        "Everything in Starter, plus a verified email sender for the email fallback.",
        frozenset({"email_sender"}),
    ),
}
ADD_ONS: dict[str, AddOnInfo] = {
    "video": AddOnInfo(
        "video", "Personalised video", "A personalised video for each lead, linked in the invite or message.", "video"
    ),
    "email_sender": AddOnInfo(
        "email_sender",
        "Scale email sender",
        "The Scale plan's verified email sender on any plan: the email fallback for leads who do not accept.",
        "email_sender",
    ),
}
FEATURE_LABELS: dict[str, str] = {"video": "Personalised video", "email_sender": "An email sender (email fallback)"}
DEFAULT_PLAN = "starter"


@dataclass(frozen=True)
class Entitlements:
    """A workspace's plan, its add-ons and the features they give."""

    workspace_id: str
    plan: str
    add_ons: tuple[str, ...]

    @property
    def features(self) -> frozenset[str]:
        """Every feature the plan and the add-ons include."""
        info = PLANS.get(self.plan, PLANS[DEFAULT_PLAN])
        return info.features | {ADD_ONS[a].feature for a in self.add_ons if a in ADD_ONS}

    def allows(self, feature: str) -> bool:
        """Whether the workspace may use ``feature``."""
        return feature in self.features

    def require(self, feature: Feature, field: str) -> None:
        """Nothing when the feature is included, else a 403 ``plan_required`` problem naming ``field``."""
        if self.allows(feature):
            return
        upgrade = upgrade_for(feature)
        label = FEATURE_LABELS[feature]
        current = PLANS.get(self.plan, PLANS[DEFAULT_PLAN]).label
        message = f"{label} is not included in your {current} plan: {upgrade['label']} to use it"
        raise Problem(
            403,
            "plan_required",
            f"{field}: {message}",
            field=field,
            feature=feature,
            plan=self.plan,
            upgrade=upgrade,
            errors=[{"field": field, "message": message}],
        )


def upgrade_for(feature: str) -> dict[str, str]:
    """The smallest upgrade that unlocks ``feature``: an add-on when there is one, else a plan."""
    for addon in ADD_ONS.values():
        if addon.feature == feature:
            return {"add_on": addon.name, "label": f"add {addon.label}"}
    for plan in PLANS.values():
        if feature in plan.features:
            return {"plan": plan.name, "label": f"upgrade to {plan.label}"}
    raise KeyError(feature)


async def load(engine: AsyncEngine, workspace: str) -> Entitlements:
    """The workspace's entitlements as stored (Starter without add-ons when it has no row)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(workspace_plans.c.plan, workspace_plans.c.add_ons).where(
                    workspace_plans.c.workspace_id == workspace
                )
            )
        ).first()
    if row is None:
        return Entitlements(workspace, DEFAULT_PLAN, ())
    return Entitlements(workspace, str(row.plan), tuple(str(a) for a in row.add_ons or ()))


async def set_plan(
    engine: AsyncEngine, workspace: str, plan: str, add_ons: tuple[str, ...] | list[str] = ()
) -> Entitlements:
    """Store a workspace's plan and add-ons (the operator's command, tests, and the upgrade route)."""
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; one of {', '.join(PLANS)}")
    unknown = [a for a in add_ons if a not in ADD_ONS]
    if unknown:
        raise ValueError(f"unknown add-on {unknown[0]!r}; one of {', '.join(ADD_ONS)}")
    chosen = sorted(set(add_ons))
    values = {"plan": plan, "add_ons": chosen, "updated_at": datetime.now(UTC)}
    async with engine.begin() as conn:
        await conn.execute(
            insert(workspace_plans)
            .values(workspace_id=workspace, **values)
            .on_conflict_do_update(index_elements=["workspace_id"], set_=values)
        )
    return Entitlements(workspace, plan, tuple(chosen))


class PlanResolver:
    """Entitlements per workspace with a short cache (an upgrade through this process is seen at once)."""

    def __init__(self, engine: AsyncEngine, ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[Entitlements, float]] = {}

    async def of(self, workspace: str) -> Entitlements:
        """The workspace's entitlements."""
        hit = self._cache.get(workspace)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        found = await load(self.engine, workspace)
        self._cache[workspace] = (found, time.monotonic() + self.ttl_s)
        return found

    def forget(self, workspace: str) -> None:
        """Drop the cached entitlements (after a change)."""
        self._cache.pop(workspace, None)


def resolver(request: Request) -> PlanResolver:
    """The app's plan resolver (made on first use from the service's engine)."""
    found: PlanResolver | None = getattr(request.app.state, "plans", None)
    if found is None:
        found = PlanResolver(request.app.state.service.engine)
        request.app.state.plans = found
    return found


async def entitlements(request: Request, ws: Annotated[str, Security(workspace_id, scopes=["read"])]) -> Entitlements:
    """FastAPI dependency: the entitlements of the request's workspace (the route declares its own scope). Reading
    them needs the read scope: a dependency that declares none is held to admin, which refused write tokens."""
    return await resolver(request).of(ws)


Plan = Annotated[Entitlements, Depends(entitlements)]
"""A route parameter: the entitlements of the request's workspace."""


# -- the plan API (served by outreach, where the gated features are) ------------------------------


class CatalogPlan(BaseModel):
    """A plan one can be on."""

    name: str
    label: str
    description: str
    features: list[str]


class CatalogAddOn(BaseModel):
    """An add-on one can buy on top of a plan."""

    name: str
    label: str
    description: str
    feature: str


class PlanOut(BaseModel):
    """The workspace's plan, add-ons and features, and the catalogue to upgrade from."""

    workspace_id: str
    plan: str
    plan_label: str
    add_ons: list[str]
    features: list[str]
    plans: list[CatalogPlan]
    available_add_ons: list[CatalogAddOn]


class UpgradeIn(BaseModel):
    """An upgrade: a higher plan, add-ons, or both (nothing already included is removed)."""

    model_config = ConfigDict(extra="forbid")

    plan: PlanName | None = None
    add_ons: list[AddOnName] = Field(default_factory=list, max_length=len(ADD_ONS))


def plan_out(e: Entitlements) -> PlanOut:
    """The API shape of entitlements."""
    return PlanOut(
        workspace_id=e.workspace_id,
        plan=e.plan,
        plan_label=PLANS.get(e.plan, PLANS[DEFAULT_PLAN]).label,
        add_ons=list(e.add_ons),
        features=sorted(e.features),
        plans=[
            CatalogPlan(name=p.name, label=p.label, description=p.description, features=sorted(p.features))
            for p in PLANS.values()
        ],
        available_add_ons=[
            CatalogAddOn(name=a.name, label=a.label, description=a.description, feature=a.feature)
            for a in ADD_ONS.values()
        ],
    )


PLAN_ORDER = tuple(PLANS)


def upgraded(current: Entitlements, body: UpgradeIn) -> tuple[str, tuple[str, ...]]:
    """The plan and add-ons after an upgrade: never lower than now (a downgrade is not an upgrade)."""
    plan = current.plan if current.plan in PLANS else DEFAULT_PLAN
    if body.plan is not None and PLAN_ORDER.index(body.plan) > PLAN_ORDER.index(plan):
        plan = body.plan
    return plan, tuple(sorted({*current.add_ons, *body.add_ons}))


def plan_router() -> APIRouter:
    """``GET /v1/plan`` and ``POST /v1/plan/upgrade``.

    No payment provider is wired in: an upgrade applies at once, as the simulated providers do; a billing
    integration would confirm the payment before :func:`set_plan`.
    """
    router = APIRouter(prefix="/v1/plan", tags=["plan"])

    @router.get("", response_model=PlanOut)
    async def get_plan(e: Plan, _read: ReadWorkspace) -> PlanOut:
        """The workspace's plan, add-ons and features, with the plans and add-ons it can upgrade to."""
        return plan_out(e)

    @router.post("/upgrade", response_model=PlanOut)
    async def upgrade(body: UpgradeIn, request: Request, e: Plan, _admin: AdminWorkspace) -> PlanOut:
        """Move to a higher plan and/or add add-ons (an explicit action of a user; never a downgrade)."""
        if body.plan is None and not body.add_ons:
            raise Problem(
                422,
                "invalid_request",
                "plan: name a plan or at least one add-on",
                errors=[{"field": "plan", "message": "name a plan or at least one add-on"}],
            )
        plan, add_ons = upgraded(e, body)
        found = resolver(request)
        result = await set_plan(found.engine, e.workspace_id, plan, add_ons)
        found.forget(e.workspace_id)
        return plan_out(result)

    return router
