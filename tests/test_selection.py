"""Selection rules of the contract, on plain Module objects (no files, no rendering)."""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edition.audience.selection import Selection, select
from edition.content.modules import Module

RUN_DATE = dt.date(2026, 3, 1)


def article(module_id: str, *, priority: int = 0, segments: tuple[str, ...] = (),
            interests: tuple[str, ...] = (), locales: tuple[str, ...] | None = None,
            valid_from: dt.date | None = None, valid_until: dt.date | None = None,
            kind: str = "article") -> Module:
    return Module(id=module_id, kind=kind, title=module_id.title(),
                  segments=frozenset(segments), interests=frozenset(interests),
                  locales=frozenset(locales) if locales is not None else None,
                  priority=priority, valid_from=valid_from, valid_until=valid_until)


def by_kind(*modules: Module) -> dict[str, list[Module]]:
    out: dict[str, list[Module]] = {}
    for m in modules:
        out.setdefault(m.kind, []).append(m)
    return out


def pick(modules: dict[str, list[Module]], slots=(("articles", "article", 2),), *,
         segments=(), locale="en", interests=(), as_of=RUN_DATE) -> Selection:
    return select(list(slots), modules, segments=segments, locale=locale, interests=interests,
                  as_of=as_of)


def skipped(selection: Selection, slot: int = 0) -> dict[str, str]:
    return {s.module_id: s.reason for s in selection.slots[slot].skipped}


# -- the worked example of design.md ----------------------------------------------------

WORKED = by_kind(
    article("a", interests=("garden",)),
    article("b", interests=("garden", "travel")),
    article("c", priority=5, segments=("mvc",)),
    article("d", priority=9, valid_until=dt.date(2026, 1, 31)),
)


def test_worked_example_customer_without_segments_with_garden_and_travel() -> None:
    selection = pick(WORKED, segments=(), interests=["garden", "travel"])
    assert selection.ids() == {"articles": ["b", "a"]}
    reasons = skipped(selection)
    assert set(reasons) == {"c", "d"}
    assert "segment" in reasons["c"] and "mvc" in reasons["c"]
    assert "expired" in reasons["d"] and "2026-01-31" in reasons["d"]
    chosen = selection.slots[0].chosen
    assert [c.rank for c in chosen] == [1, 2]
    assert "garden" in chosen[0].reason and "travel" in chosen[0].reason
    assert "garden" in chosen[1].reason


def test_worked_example_mvc_customer_without_interests() -> None:
    selection = pick(WORKED, segments=("mvc",), interests=[])
    assert selection.ids() == {"articles": ["c", "a"]}
    reasons = skipped(selection)
    assert set(reasons) == {"b", "d"}
    assert "expired" in reasons["d"]
    assert "outranked" in reasons["b"]
    assert "mvc" in selection.slots[0].chosen[0].reason
    assert "priority 5" in selection.slots[0].chosen[0].reason


# -- ranking -----------------------------------------------------------------------------


def test_priority_beats_shared_interests_beats_id() -> None:
    modules = by_kind(
        article("zz-high", priority=3),
        article("aa-many", interests=("garden", "travel", "books")),
        article("bb-one", interests=("garden",)),
        article("ab-none"),
        article("aa-none"),
    )
    selection = pick(modules, (("articles", "article", 5),),
                     interests=["garden", "travel", "books"])
    assert selection.ids()["articles"] == ["zz-high", "aa-many", "bb-one", "aa-none", "ab-none"]


def test_ranking_does_not_depend_on_catalog_order() -> None:
    modules = [article(f"m{i}", priority=i % 3, interests=("garden",) if i % 2 else ())
               for i in range(12)]
    expected = pick(by_kind(*modules), (("articles", "article", 6),),
                    interests=["garden"]).ids()
    for seed in range(5):
        shuffled = modules[:]
        random.Random(seed).shuffle(shuffled)
        assert pick(by_kind(*shuffled), (("articles", "article", 6),),
                    interests=["garden"]).ids() == expected


def test_only_the_slots_kind_is_considered() -> None:
    modules = by_kind(article("x", priority=99, kind="offer"), article("y"))
    selection = pick(modules, (("articles", "article", 2),))
    assert selection.ids() == {"articles": ["y"]}
    assert "x" not in skipped(selection)


# -- eligibility -------------------------------------------------------------------------


def test_locale_matches_language_of_regional_locale() -> None:
    modules = by_kind(article("es-only", locales=("es",)), article("en-only", locales=("en",)),
                      article("anyone"))
    mx = pick(modules, (("articles", "article", 3),), locale="es-MX")
    assert sorted(mx.ids()["articles"]) == ["anyone", "es-only"]
    assert "locale" in skipped(mx)["en-only"]
    en = pick(modules, (("articles", "article", 3),), locale="en")
    assert sorted(en.ids()["articles"]) == ["anyone", "en-only"]
    assert "locale" in skipped(en)["es-only"]
    assert "es-MX" in skipped(mx)["en-only"]


def test_valid_from_and_valid_until_are_inclusive() -> None:
    day = dt.date(2026, 3, 1)
    modules = by_kind(
        article("starts-today", valid_from=day),
        article("ends-today", valid_until=day),
        article("starts-tomorrow", valid_from=day + dt.timedelta(days=1)),
        article("ended-yesterday", valid_until=day - dt.timedelta(days=1)),
        article("window", valid_from=day - dt.timedelta(days=3), valid_until=day),
    )
    selection = pick(modules, (("articles", "article", 5),), as_of=day)
    assert sorted(selection.ids()["articles"]) == ["ends-today", "starts-today", "window"]
    reasons = skipped(selection)
    assert "not yet valid" in reasons["starts-tomorrow"] and "2026-03-02" in reasons[
        "starts-tomorrow"]
    assert "expired" in reasons["ended-yesterday"] and "2026-02-28" in reasons[
        "ended-yesterday"]


def test_segments_absent_means_everyone_else_one_shared_segment() -> None:
    modules = by_kind(article("all"), article("mvc-or-senior", segments=("mvc", "senior")))
    assert pick(modules, segments=("senior",)).ids()["articles"] == ["all", "mvc-or-senior"]
    none = pick(modules, segments=("expecting",))
    assert none.ids()["articles"] == ["all"]
    assert "segment" in skipped(none)["mvc-or-senior"]


def test_a_module_is_not_chosen_twice_across_slots_of_the_same_kind() -> None:
    modules = by_kind(article("top", priority=9), article("mid", priority=5), article("low"))
    slots = (("lead", "article", 1), ("more", "article", 2))
    selection = pick(modules, slots)
    assert selection.ids() == {"lead": ["top"], "more": ["mid", "low"]}
    reasons = skipped(selection, 1)
    assert "already chosen" in reasons["top"] and "lead" in reasons["top"]


def test_fewer_eligible_than_count_is_allowed_and_reported() -> None:
    modules = by_kind(article("one"), article("gone", valid_until=dt.date(2020, 1, 1)))
    selection = pick(modules, (("articles", "article", 3),))
    slot = selection.slots[0]
    assert selection.ids() == {"articles": ["one"]}
    assert slot.short and slot.count == 3
    empty = pick({}, (("articles", "article", 2),))
    assert empty.ids() == {"articles": []} and empty.slots[0].short


def test_slots_come_out_in_campaign_order() -> None:
    modules = by_kind(article("g", kind="greeting"), article("a"), article("o", kind="offer"))
    slots = (("offer", "offer", 1), ("greeting", "greeting", 1), ("articles", "article", 1))
    assert list(pick(modules, slots).ids()) == ["offer", "greeting", "articles"]


# -- every candidate is accounted for, against a plain reading of the contract -----------

NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])
SEGS = st.frozensets(st.sampled_from(["mvc", "senior", "expecting"]), max_size=2)
TOPICS = st.frozensets(st.sampled_from(["garden", "travel", "books", "baby"]), max_size=3)
DAYS = st.none() | st.integers(-3, 3).map(lambda d: RUN_DATE + dt.timedelta(days=d))


@st.composite
def catalogs(draw: st.DrawFn) -> list[Module]:
    ids = draw(st.lists(NAMES, unique=True, max_size=8))
    return [article(i, priority=draw(st.integers(0, 3)), segments=tuple(draw(SEGS)),
                    interests=tuple(draw(TOPICS)),
                    locales=draw(st.none() | st.just(("es",)) | st.just(("en", "es"))),
                    valid_from=draw(DAYS), valid_until=draw(DAYS)) for i in ids]


def contract_pick(modules: list[Module], slots, segments, locale, interests, as_of):
    """design.md's selection rules, written as plainly as possible."""
    taken: set[str] = set()
    result = {}
    for name, kind, count in slots:
        eligible = [m for m in modules
                    if m.kind == kind
                    and (not m.segments or m.segments & set(segments))
                    and (m.locales is None or locale.split("-")[0] in m.locales
                         or locale in m.locales)
                    and (m.valid_from is None or m.valid_from <= as_of)
                    and (m.valid_until is None or as_of <= m.valid_until)
                    and m.id not in taken]
        eligible.sort(key=lambda m: (-m.priority, -len(m.interests & set(interests)), m.id))
        result[name] = [m.id for m in eligible[:count]]
        taken.update(result[name])
    return result


@settings(max_examples=60, deadline=None)
@given(modules=catalogs(), segments=SEGS, interests=TOPICS,
       locale=st.sampled_from(["en", "es", "es-MX"]), first=st.integers(1, 3),
       second=st.integers(1, 3))
def test_selection_follows_the_contract_and_explains_every_candidate(
        modules, segments, interests, locale, first, second) -> None:
    slots = [("lead", "article", first), ("more", "article", second)]
    selection = pick(by_kind(*modules), slots, segments=tuple(segments), locale=locale,
                     interests=list(interests))
    assert selection.ids() == contract_pick(modules, slots, segments, locale, interests,
                                            RUN_DATE)
    for slot in selection.slots:
        chosen = [c.module.id for c in slot.chosen]
        passed = [s.module_id for s in slot.skipped]
        assert sorted(chosen + passed) == sorted(m.id for m in modules)
        assert all(s.reason.strip() for s in slot.skipped)
        assert all(c.reason.strip() for c in slot.chosen)
        assert slot.short == (len(chosen) < slot.count)
