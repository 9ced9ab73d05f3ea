"""Discovery's pure logic: normalisation, deterministic ids, criteria ranges, fit signals, progress, CSV rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.discovery import domain
from services.discovery.adapters import Candidate, Evidence

TODAY = date(2026, 1, 5)


@pytest.mark.parametrize(
    "raw",
    [
        "https://www.linkedin.com/in/ada-adler",
        "https://www.linkedin.com/in/ada-adler/",
        "HTTPS://WWW.LINKEDIN.COM/in/Ada-Adler/",
        "http://linkedin.com/in/ada-adler?trk=public_profile",
        "https://de.linkedin.com/in/ada-adler/?originalSubdomain=de#about",
        "linkedin.com/in/ada-adler",
        "  https://www.linkedin.com/in/ada-adler/details/experience/  ",
        "https://www.linkedin.com/in/ada%2Dadler",
    ],
)
def test_linkedin_urls_of_one_person_normalise_to_one_form(raw: str) -> None:
    assert domain.normalise_linkedin_url(raw) == "https://www.linkedin.com/in/ada-adler"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("https://www.linkedin.com/company/northwind/", "profile URL"),
        ("https://www.linkedin.com/in/", "profile URL"),
        ("https://example.com/in/ada-adler", "linkedin.com"),
        ("https://linkedin.com.evil.io/in/ada", "linkedin.com"),
        ("ftp://www.linkedin.com/in/ada-adler", "http"),
        ("https://www.linkedin.com/in/a", "invalid profile name"),
        # Names that would walk or break a provider's URL path when put into it.
        ("https://www.linkedin.com/in/../", "invalid profile name"),
        ("https://www.linkedin.com/in/..%2F..%2Fadmin", "invalid profile name"),
        ("https://www.linkedin.com/in/%2E%2E", "invalid profile name"),
        ("https://www.linkedin.com/in/ada%252Fadmin", "invalid profile name"),
        ("https://www.linkedin.com/in/ada.adler", "invalid profile name"),
        ("https://www.linkedin.com/in/ada%3Fx=1", "invalid profile name"),
        ("https://www.linkedin.com/in/ada%00x", "invalid profile name"),
    ],
)
def test_invalid_linkedin_urls_say_why(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        domain.normalise_linkedin_url(raw)


def test_profile_names_in_any_script_stay() -> None:
    assert domain.normalise_linkedin_url("https://www.linkedin.com/in/jos%C3%A9-garc%C3%ADa") == (
        "https://www.linkedin.com/in/josé-garcía"
    )


def test_emails_normalise_and_invalid_ones_are_rejected() -> None:
    assert domain.normalise_email("  Ada.Adler@Northwind.IO ") == "ada.adler@northwind.io"
    assert domain.normalise_email("mailto:ada@northwind.io") == "ada@northwind.io"
    for bad in ["ada", "ada@", "@northwind.io", "ada@northwind", "a b@northwind.io", "ada@@northwind.io"]:
        with pytest.raises(ValueError, match="not a valid email"):
            domain.normalise_email(bad)


def test_lead_ids_are_deterministic_per_workspace_and_person() -> None:
    a = domain.lead_id_for("ws-a", linkedin_url="https://www.linkedin.com/in/ada-adler")
    assert a == domain.lead_id_for("ws-a", linkedin_url="HTTP://DE.linkedin.com/in/Ada-Adler/?x=1")
    assert a != domain.lead_id_for("ws-b", linkedin_url="https://www.linkedin.com/in/ada-adler")
    assert a != domain.lead_id_for("ws-a", linkedin_url="https://www.linkedin.com/in/ada-adler-2")
    # The URL wins over the email; without a URL the normalised email decides.
    assert a == domain.lead_id_for("ws-a", linkedin_url="linkedin.com/in/ada-adler", email="ada@northwind.io")
    by_mail = domain.lead_id_for("ws-a", email="Ada@Northwind.io")
    assert by_mail == domain.lead_id_for("ws-a", email=" ada@northwind.io")
    assert by_mail != a
    with pytest.raises(ValueError, match="LinkedIn URL or an email"):
        domain.lead_id_for("ws-a")


def test_linkedin_people_search_urls_are_validated() -> None:
    url = "https://LinkedIn.com/search/results/people/?keywords=head%20of%20sales&origin=GLOBAL#x"
    assert domain.normalise_linkedin_search_url(url) == (
        "https://www.linkedin.com/search/results/people/?keywords=head%20of%20sales&origin=GLOBAL"
    )
    assert domain.normalise_linkedin_search_url("https://www.linkedin.com/sales/search/people?query=x").startswith(
        "https://www.linkedin.com/sales/search/people/?"
    )
    with pytest.raises(ValueError, match="people search URL"):
        domain.normalise_linkedin_search_url("https://www.linkedin.com/search/results/companies/?keywords=x")
    with pytest.raises(ValueError, match="no search parameters"):
        domain.normalise_linkedin_search_url("https://www.linkedin.com/search/results/people/")
    with pytest.raises(ValueError, match=r"linkedin\.com"):
        domain.normalise_linkedin_search_url("https://example.com/search/results/people/?keywords=x")


SIGNALS: dict[str, Any] = {"prompt": "SaaS companies scaling sales", "signal_types": ["hiring_plans"]}


@pytest.mark.parametrize("days", [1, 14, 30])
def test_lookback_inside_the_range_is_accepted(days: int) -> None:
    assert domain.parse_criteria("signals", {**SIGNALS, "lookback_days": days}).lookback_days == days  # type: ignore[union-attr]
    assert domain.parse_criteria("posts", {"keywords": ["outbound"], "lookback_days": days}).lookback_days == days  # type: ignore[union-attr]


@pytest.mark.parametrize("days", [0, 31, -3, 365])
def test_lookback_outside_the_range_names_the_range(days: int) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [("signals", SIGNALS), ("posts", {"keywords": ["outbound"]})]
    for kind, raw in cases:
        with pytest.raises(ValidationError) as err:
            domain.parse_criteria(kind, {**raw, "lookback_days": days})
        [e] = err.value.errors()
        assert e["loc"] == ("lookback_days",)
        assert "between 1 and 30 days" in e["msg"]


def test_signal_criteria_rules() -> None:
    with pytest.raises(ValidationError, match="signal_types"):
        domain.parse_criteria("signals", {"prompt": "anything", "signal_types": []})
    with pytest.raises(ValidationError, match="signal_types"):
        domain.parse_criteria("signals", {"prompt": "anything", "signal_types": ["weather"]})
    with pytest.raises(ValidationError, match="custom_signal"):
        domain.parse_criteria("signals", {"prompt": "anything", "signal_types": ["custom"]})
    ok = domain.parse_criteria(
        "signals",
        {
            "prompt": "anything",
            "signal_types": ["news", "news", "custom"],
            "custom_signal": "opened a Berlin office",
            "location": "Berlin",
        },
    )
    assert ok.signal_types == ["news", "custom"]  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="source"):
        domain.parse_criteria("posts", {"keywords": ["x"], "source": "email"})
    with pytest.raises(ValidationError, match="describe who you want"):
        domain.parse_criteria("people", {})
    with pytest.raises(ValidationError, match="Extra inputs"):
        domain.parse_criteria("people", {"titles": ["CTO"], "colour": "blue"})


def _candidate(**kw: object) -> Candidate:
    base: dict[str, object] = {
        "linkedin_url": "https://www.linkedin.com/in/ada-adler",
        "full_name": "Ada Adler",
        "title": "Head of Sales",
        "company": "Northwind Labs",
        "location": "Berlin",
        "industry": "Software",
    }
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


def test_fit_signals_keep_evidence_inside_the_lookback_and_explain_attribute_matches() -> None:
    criteria = domain.parse_criteria(
        "signals", {**SIGNALS, "signal_types": ["hiring_plans", "news"], "lookback_days": 7, "location": "berlin"}
    )
    cand = _candidate(
        evidence=(
            Evidence("hiring_plans", "Northwind plans to grow sales", TODAY - timedelta(days=3)),
            Evidence("news", "Northwind in the news", TODAY - timedelta(days=20)),  # too old
            Evidence("tech_stack", "uses Salesforce", TODAY),  # not asked for
        )
    )
    signals = domain.fit_signals(criteria, cand, TODAY)
    kinds = [s.kind for s in signals]
    assert kinds[:2] == ["hiring_plans", "location"]
    assert "news" not in kinds and "tech_stack" not in kinds
    assert signals[0].observed_on == TODAY - timedelta(days=3)
    assert any(s.kind == "keyword" and "sales" in s.detail for s in signals)

    people = domain.parse_criteria(
        "people", {"titles": ["head of sales"], "locations": ["Berlin"], "industries": ["software"]}
    )
    kinds = [s.kind for s in domain.fit_signals(people, cand, TODAY)]
    assert {"title", "location", "industry"} <= set(kinds)

    posts = domain.parse_criteria("posts", {"keywords": ["cold email"], "lookback_days": 5})
    post = _candidate(evidence=(Evidence("post", "'Cold email is dead?'", TODAY - timedelta(days=1)),))
    [signal] = domain.fit_signals(posts, post, TODAY)
    assert signal.kind == "intent_post" and "'cold email'" in signal.detail
    nothing = domain.fit_signals(posts, _candidate(), TODAY)
    assert [s.kind for s in nothing] == ["provider_rank"]


NOW = datetime(2026, 1, 5, 8, tzinfo=UTC)


def test_progress_decisions() -> None:
    p = domain.Progress(target=10, new=8)
    assert domain.room(p) == 2
    assert domain.room(domain.Progress(target=10, new=2, per_run=3, run_new=1, recurring=True)) == 2
    full = domain.found_new(p, 2)
    assert (full.new, full.run_new) == (10, 2)
    week = timedelta(days=7)
    # The target wins over exhaustion, exhaustion over the run budget.
    assert domain.after_page(full, exhausted=True, now=NOW, interval=week) == domain.Decision(
        "finished", "target_reached"
    )
    assert domain.after_page(p, exhausted=True, now=NOW, interval=week) == domain.Decision("finished", "exhausted")
    assert domain.after_page(p, exhausted=False, now=NOW, interval=week) == domain.Decision("running")
    recurring = domain.Progress(target=10, new=5, per_run=5, run_new=5, recurring=True)
    assert domain.after_page(recurring, exhausted=False, now=NOW, interval=week) == domain.Decision(
        "scheduled", next_run_at=NOW + week
    )
    pages_spent = domain.Progress(target=10, new=5, run_pages=3, pages_per_run=3, recurring=True)
    assert domain.after_page(pages_spent, exhausted=False, now=NOW, interval=week).status == "scheduled"
    # A one-off search is not paused by the page budget.
    assert (
        domain.after_page(
            domain.Progress(target=10, run_pages=3, pages_per_run=3), exhausted=False, now=NOW, interval=week
        ).status
        == "running"
    )
    fresh = domain.new_run(recurring)
    assert (fresh.run_new, fresh.run_pages, fresh.new) == (0, 0, 5)


def test_exhausted_recurring_searches_search_again_and_watched_ones_keep_watching() -> None:
    week = timedelta(days=7)
    recurring = domain.Progress(target=10, new=4, recurring=True)
    # Results ran out before the target: not finished, searched again from the top after the interval.
    assert domain.after_page(recurring, exhausted=True, now=NOW, interval=week) == domain.Decision(
        "scheduled", next_run_at=NOW + week, restart=True
    )
    one_off = domain.Progress(target=10, new=4)
    assert domain.after_page(one_off, exhausted=True, now=NOW, interval=week, watched=True).status == "watching"
    assert domain.after_page(one_off, exhausted=True, now=NOW, interval=week).finish_reason == "exhausted"
    # Only NEW leads count: known people found again leave the target where it was.
    assert domain.room(domain.Progress(target=10, new=4)) == 6


def test_campaign_audience_runs_and_extensions_decide_per_search_state() -> None:
    run = domain.audience_run_action
    assert run("running", None) == "none"
    assert run("scheduled", None) == "run_now"
    assert run("watching", None) == "none"
    assert run("finished", "exhausted") == "reopen"
    assert [run("finished", r) for r in ("target_reached", "cancelled", "failed")] == ["none"] * 3
    extend = domain.extension_action
    assert [extend("finished", r) for r in ("target_reached", "exhausted")] == ["reopen", "reopen"]
    assert [extend("finished", r) for r in ("cancelled", "failed")] == ["none", "none"]
    assert extend("scheduled", None) == "run_now" and extend("running", None) == "none"
    assert domain.finished_what(1) == "finished" and domain.finished_what(3) == "finished:3"


def test_posts_match_pain_before_intent_and_watch_lookback() -> None:
    criteria = domain.PostsCriteria(keywords=["sequencer", "CRM"], pain_keywords=["struggling with outbound"])
    pain = domain.match_post(criteria, "Honestly STRUGGLING WITH OUTBOUND; which sequencer do you use?")
    assert pain == domain.PostMatch("pain", ("struggling with outbound", "sequencer"))
    assert domain.match_post(criteria, "We are replacing our CRM") == domain.PostMatch("intent", ("CRM",))
    assert domain.match_post(criteria, "Team offsite photos") is None
    assert domain.watch_lookback_days(None, NOW, 14) == 14
    assert domain.watch_lookback_days(NOW - timedelta(hours=1), NOW, 14) == 1
    assert domain.watch_lookback_days(NOW - timedelta(days=2, hours=1), NOW, 14) == 3
    assert domain.watch_lookback_days(NOW - timedelta(days=90), NOW, 14) == 14
    a = domain.post_key("https://www.linkedin.com/in/x", "Hello   world")
    assert a == domain.post_key("https://www.linkedin.com/in/x", "Hello world") != domain.post_key("u", "Hello world")
    assert (
        domain.post_key("u", "t", ref="urn:1") == "ref:urn:1"
        and domain.post_key("u", "t", url="https://p") == "url:https://p"
    )
    assert domain.post_of("'quoted post'") == "quoted post"


def test_csv_header_maps_aliases_and_needs_an_identifier() -> None:
    header = domain.map_header(
        ["LinkedIn URL", "E-mail", "First Name", "Last name", "Job Title", "Company Name", "Notes"]
    )
    assert header.columns == {
        "LinkedIn URL": "linkedin_url",
        "E-mail": "email",
        "First Name": "first_name",
        "Last name": "last_name",
        "Job Title": "title",
        "Company Name": "company",
    }
    assert header.ignored == ["Notes"]
    with pytest.raises(domain.HeaderError, match="neither a LinkedIn URL column"):
        domain.map_header(["name", "company"])
    with pytest.raises(domain.HeaderError, match="both map to 'email'"):
        domain.map_header(["email", "Email Address"])


def test_csv_rows_are_validated_with_row_and_column() -> None:
    header = domain.map_header(["linkedin", "email", "name", "company"])

    def row(n: int, **values: object) -> domain.LeadInput | list[domain.RowError]:
        return domain.validate_row(n, values, header, header_width=4)  # type: ignore[arg-type]

    ok = row(2, linkedin="linkedin.com/in/Ada-Adler/", email="", name="Ada Adler", company="Northwind")
    assert ok == domain.LeadInput(
        linkedin_url="https://www.linkedin.com/in/ada-adler",
        full_name="Ada Adler",
        first_name="Ada",
        last_name="Adler",
        company="Northwind",
    )
    assert row(3, linkedin="", email="BEN@x.io", name="", company="") == domain.LeadInput(email="ben@x.io")
    errors = row(4, linkedin="https://example.com/in/x", email="nope", name="X", company="")
    assert errors == [
        domain.RowError(4, "linkedin", "'https://example.com/in/x' must be a linkedin.com URL, not 'example.com'"),
        domain.RowError(4, "email", "'nope' is not a valid email address"),
    ]
    assert row(5, linkedin=" ", email="", name="Nobody", company="") == [
        domain.RowError(5, "linkedin", "a row needs a LinkedIn URL or an email; both are empty")
    ]
    long = row(6, linkedin="", email="a@b.io", name="x" * 301, company="")
    assert long == [domain.RowError(6, "name", "is longer than 300 characters")]
    wide = domain.validate_row(
        7, {"linkedin": "", "email": "a@b.io", "name": "", "company": "", None: ["x", "y"]}, header, header_width=4
    )
    assert wide == [domain.RowError(7, "*", "row has 6 fields but the header has 4")]
