"""Traits and rarity (generation/traits.py): pure functions, no database.

Statistical tests use fixed seeds (seed_i = sha256(uint256be(i))), so they are deterministic;
the chi-square goodness-of-fit tests reject at p < 0.001.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, chisquare

from generation.traits import (
    InvalidRarityTable,
    QuotaPool,
    attributes,
    fixed_point_weight,
    quota_traits,
    quota_traits_for,
    rarity,
    render_prompt,
    template_placeholders,
    token_traits,
    trait_probabilities,
    trait_rarity,
    uniform_below,
    validate_rarity,
    validate_template,
    weighted_traits,
)

ALPHA = 0.001
N_SEEDS = 10_000


def seed(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(32, "big")).digest()


SEEDS = [seed(i) for i in range(N_SEEDS)]


def weighted_table() -> dict:
    return {
        "mode": "weighted",
        "categories": [
            {
                "name": "background",
                "verify": False,
                "options": [
                    {"name": "Blue", "prompt": "a blue sky", "weight": 70},
                    {"name": "Gold", "prompt": "gold leaf", "weight": 25.5},
                    {"name": "Void", "prompt": "a black void", "weight": 4.5},
                ],
            },
            {
                "name": "hat",
                "verify": True,
                "options": [
                    {"name": "None", "prompt": "bareheaded", "weight": 0.6},
                    {"name": "Crown", "prompt": "wearing a crown", "weight": 0.3},
                    {"name": "Halo", "prompt": "with a halo", "weight": 0.1},
                ],
            },
            {
                "name": "eyes",
                "verify": True,
                "options": [
                    {"name": "Green", "prompt": "green eyes", "weight": 1},
                    {"name": "Red", "prompt": "red eyes", "weight": 3},
                    {"name": "Laser", "prompt": "laser eyes", "weight": 12},
                    {"name": "Closed", "prompt": "closed eyes", "weight": 84},
                ],
            },
        ],
    }


def quota_table(max_supply: int = 500) -> dict:
    return {
        "mode": "quota",
        "categories": [
            {
                "name": "background",
                "verify": False,
                "options": [
                    {"name": "Blue", "prompt": "a blue sky", "quota": max_supply - 60 - 5},
                    {"name": "Gold", "prompt": "gold leaf", "quota": 60},
                    {"name": "Void", "prompt": "a black void", "quota": 5},
                ],
            },
            {
                "name": "hat",
                "verify": True,
                "options": [
                    {"name": "None", "prompt": "bareheaded", "quota": max_supply - 1},
                    {"name": "Crown", "prompt": "wearing a crown", "quota": 1},
                    {"name": "Never", "prompt": "unused", "quota": 0},
                ],
            },
        ],
    }


# --- the PRNG ------------------------------------------------------------------------------


def test_it_matches_the_documented_test_vector() -> None:
    message = (
        (32).to_bytes(4, "big")
        + bytes(32)
        + (10).to_bytes(4, "big")
        + b"background"
        + (0).to_bytes(4, "big")
    )
    digest = hashlib.sha256(message).digest()
    assert digest[:8].hex() == "bab4b267b10b1af2"
    u = int.from_bytes(digest[:8], "big")
    assert u == 13453574145284184818
    assert uniform_below(bytes(32), "background", 10**8) == u % 10**8 == 84184818


def test_it_rejects_instead_of_taking_a_biased_modulo() -> None:
    # n = 2**63 + 1: limit = 2**63 + 1, so about half of the 64-bit blocks are rejected.
    n = 2**63 + 1
    for i in range(50):
        s = seed(i)
        expected_counter = 0
        while True:
            block = (
                len(s).to_bytes(4, "big")
                + s
                + (1).to_bytes(4, "big")
                + b"x"
                + expected_counter.to_bytes(4, "big")
            )
            u = int.from_bytes(hashlib.sha256(block).digest()[:8], "big")
            if u < 2**64 - (2**64 % n):
                break
            expected_counter += 1
        assert uniform_below(s, "x", n) == u % n


def test_it_scales_weights_exactly_to_fixed_point() -> None:
    assert fixed_point_weight(70) == 70_000_000
    assert fixed_point_weight(25.5) == 25_500_000
    assert fixed_point_weight(0.1) == 100_000
    assert fixed_point_weight(1e-6) == 1


# --- weighted mode: goodness of fit ----------------------------------------------------------


@pytest.fixture(scope="module")
def draws() -> list[dict[str, str]]:
    """The weighted table's traits for the 10,000 seeds, drawn once for the module."""
    table = weighted_table()
    return [weighted_traits(s, table) for s in SEEDS]


def test_it_draws_weighted_frequencies_that_match_the_weights(draws: list[dict[str, str]]) -> None:
    table = weighted_table()
    probabilities = trait_probabilities(table, max_supply=N_SEEDS)
    for category in table["categories"]:
        name = category["name"]
        options = [o["name"] for o in category["options"]]
        counts = Counter(d[name] for d in draws)
        observed = [counts[o] for o in options]
        expected = [probabilities[name][o] * N_SEEDS for o in options]
        result = chisquare(observed, expected)
        assert result.pvalue >= ALPHA, (name, observed, expected, result)


def test_it_would_notice_the_wrong_weights(draws: list[dict[str, str]]) -> None:
    """The same test has the power to reject: draws against swapped weights fail it."""
    counts = Counter(d["hat"] for d in draws)
    observed = [counts["None"], counts["Crown"], counts["Halo"]]
    wrong = [0.5 * N_SEEDS, 0.35 * N_SEEDS, 0.15 * N_SEEDS]
    assert chisquare(observed, wrong).pvalue < ALPHA


def test_it_draws_categories_independently(draws: list[dict[str, str]]) -> None:
    backgrounds = ["Blue", "Gold", "Void"]
    eyes = ["Green", "Red", "Laser", "Closed"]
    pairs = Counter((d["background"], d["eyes"]) for d in draws)
    contingency = [[pairs[(b, e)] for e in eyes] for b in backgrounds]
    assert chi2_contingency(contingency).pvalue >= ALPHA


# --- determinism -----------------------------------------------------------------------------


def test_it_gives_the_same_traits_for_the_same_seed() -> None:
    table = weighted_table()
    first = [weighted_traits(s, table) for s in SEEDS[:200]]
    again = [weighted_traits(s, copy.deepcopy(table)) for s in SEEDS[:200]]
    assert first == again
    assert list(first[0]) == ["background", "hat", "eyes"]


def test_it_keys_each_draw_by_category_name_not_position() -> None:
    table = weighted_table()
    shuffled = copy.deepcopy(table)
    shuffled["categories"] = [shuffled["categories"][i] for i in (2, 0, 1)]
    dropped = copy.deepcopy(table)
    del dropped["categories"][1]
    for s in SEEDS[:300]:
        original = weighted_traits(s, table)
        assert weighted_traits(s, shuffled) == original
        assert list(weighted_traits(s, shuffled)) == ["eyes", "background", "hat"]
        assert weighted_traits(s, dropped) == {
            "background": original["background"],
            "eyes": original["eyes"],
        }


def test_it_gives_different_seeds_different_traits() -> None:
    table = weighted_table()
    combos = {tuple(weighted_traits(s, table).values()) for s in SEEDS[:500]}
    assert len(combos) > 10


# --- quota mode ------------------------------------------------------------------------------


def test_it_gives_exact_quota_counts_over_the_full_supply() -> None:
    table = quota_table(500)
    assignment = quota_traits(SEEDS[:500], table)
    for category in table["categories"]:
        counts = Counter(t[category["name"]] for t in assignment)
        assert {o: counts[o] for o in (o["name"] for o in category["options"])} == {
            o["name"]: o["quota"] for o in category["options"]
        }
    # Not handed out in table order: the rare options are spread through the supply.
    voids = [k for k, t in enumerate(assignment, start=1) if t["background"] == "Void"]
    assert len(voids) == 5 and voids[-1] - voids[0] > 50, voids


def test_it_replays_the_same_quota_assignment() -> None:
    table = quota_table(500)
    assert quota_traits(SEEDS[:500], table) == quota_traits(SEEDS[:500], copy.deepcopy(table))


def test_it_never_changes_an_earlier_tokens_quota_traits() -> None:
    table = quota_table(500)
    full = quota_traits(SEEDS[:500], table)
    for n in (1, 2, 17, 250, 499):
        assert quota_traits(SEEDS[:n], table) == full[:n]
    for k in (1, 42, 500):
        assert quota_traits_for(k, SEEDS[:k], table) == full[k - 1]
        assert quota_traits_for(k, SEEDS[:500], table) == full[k - 1]
        assert token_traits(k, SEEDS[:k], table) == full[k - 1]


def test_it_draws_quota_tokens_from_the_remaining_pool() -> None:
    table = quota_table(500)
    pool = QuotaPool(table)
    for s in SEEDS[:499]:
        pool.draw(s)
    remaining = pool.remaining()
    assert sum(remaining["background"].values()) == 1
    assert remaining["hat"]["Never"] == 0
    last = pool.draw(SEEDS[499])
    assert remaining["background"][last["background"]] == 1
    assert all(v == 0 for c in pool.remaining().values() for v in c.values())
    with pytest.raises(ValueError, match="exhausted"):
        pool.draw(SEEDS[500])
    with pytest.raises(ValueError, match="exhausted"):
        quota_traits(SEEDS[:501], table)


def test_it_refuses_the_wrong_mode() -> None:
    with pytest.raises(ValueError, match="weighted mode"):
        weighted_traits(SEEDS[0], quota_table())
    with pytest.raises(ValueError, match="quota mode"):
        quota_traits(SEEDS[:3], weighted_table())
    assert token_traits(3, SEEDS[:3], {"mode": "none", "categories": []}) == {}
    assert token_traits(3, [b"", b"", SEEDS[0]], weighted_table()) == weighted_traits(
        SEEDS[0], weighted_table()
    )


# --- validation ------------------------------------------------------------------------------


def _weighted(**changes) -> dict:
    table = weighted_table()
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = table
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return table


_DELETE = object()
W = "categories__1__options__0__"


@pytest.mark.parametrize(
    ("table", "max_supply", "fragment"),
    [
        ([], 10, "rarity: must be an object"),
        ({"mode": "random", "categories": []}, 10, "mode: must be one of"),
        ({"categories": []}, 10, "mode: missing"),
        ({"mode": "weighted"}, 10, "categories: missing"),
        ({"mode": "none", "categories": [{}]}, 10, "categories: must be empty when mode is 'none'"),
        (
            {"mode": "weighted", "categories": []},
            10,
            "categories: weighted mode needs at least one",
        ),
        ({"mode": "weighted", "categories": {}}, 10, "categories: must be a list"),
        ({"mode": "none", "categories": [], "seed": 1}, 10, "seed: unknown key"),
        (_weighted(**{"categories__1": "hat"}), 10, "categories[1]: must be an object, got 'hat'"),
        (
            _weighted(**{W + "weight": -2}),
            10,
            "categories[1].options[0].weight: must be > 0, got -2",
        ),
        (_weighted(**{W + "weight": 0}), 10, "categories[1].options[0].weight: must be > 0, got 0"),
        (_weighted(**{W + "weight": math.nan}), 10, "options[0].weight: must be finite, got nan"),
        (_weighted(**{W + "weight": math.inf}), 10, "options[0].weight: must be finite, got inf"),
        (_weighted(**{W + "weight": "3"}), 10, "options[0].weight: must be a number, got '3'"),
        (_weighted(**{W + "weight": True}), 10, "options[0].weight: must be a number, got True"),
        (_weighted(**{W + "weight": 1e-9}), 10, "options[0].weight: too small, rounds to 0"),
        (_weighted(**{W + "weight": _DELETE}), 10, "categories[1].options[0].weight: missing"),
        (_weighted(**{W + "weight": 2e12}), 10, "categories[1].options: weights sum to"),
        (_weighted(**{W + "quota": 3}), 10, "options[0].quota: not used in weighted mode"),
        (_weighted(**{W + "wieght": 3}), 10, "options[0].wieght: unknown key"),
        (_weighted(**{W + "name": ""}), 10, "categories[1].options[0].name: must not be empty"),
        (_weighted(**{W + "name": "Crown"}), 10, "options[1].name: duplicate option name 'Crown'"),
        (_weighted(**{W + "prompt": None}), 10, "options[0].prompt: must be a string"),
        (_weighted(**{"categories__1__options__2": 7}), 10, "options[2]: must be an object, got 7"),
        (
            _weighted(**{"categories__1__options": []}),
            10,
            "categories[1].options: must not be empty",
        ),
        (_weighted(**{"categories__1__name": " "}), 10, "categories[1].name: must not be empty"),
        (_weighted(**{"categories__2__name": "hat"}), 10, "categories[2].name: duplicate category"),
        (
            _weighted(**{"categories__1__name": "hat.color"}),
            10,
            "categories[1].name: must not contain .",
        ),
        (_weighted(**{"categories__1__name": "token_id"}), 10, "'token_id' is reserved"),
        (_weighted(**{"categories__1__name": "0"}), 10, "must not be all digits"),
        (
            _weighted(**{"categories__1__verify": "yes"}),
            10,
            "categories[1].verify: must be true or false",
        ),
        (_weighted(**{"categories__1__colour": "red"}), 10, "categories[1].colour: unknown key"),
        (quota_table(500), 499, "quotas of category 'hat' sum to 500, but max_supply is 499"),
        (quota_table(500), 0, "max_supply: must be a positive integer"),
    ],
)
def test_it_names_the_field_of_every_problem(table: object, max_supply: int, fragment: str) -> None:
    problems = validate_rarity(table, max_supply=max_supply)  # type: ignore[arg-type]
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "categories[0].options[2].quota: must be >= 0, got -1"),
        (2.0, "categories[0].options[2].quota: must be an integer, got 2.0"),
        ("5", "categories[0].options[2].quota: must be an integer, got '5'"),
        (False, "categories[0].options[2].quota: must be an integer, got False"),
    ],
)
def test_it_checks_quotas(value: object, fragment: str) -> None:
    table = quota_table(500)
    table["categories"][0]["options"][2]["quota"] = value
    assert any(fragment in p for p in validate_rarity(table, max_supply=500))


def test_it_reports_every_problem_at_once() -> None:
    table = quota_table(500)
    table["categories"][0]["options"][0]["quota"] = 1
    table["categories"][1]["options"][1]["weight"] = 1
    del table["categories"][1]["options"][2]["quota"]
    problems = validate_rarity(table, max_supply=500)
    assert (
        "categories[0].options: quotas of category 'background' sum to 66, but max_supply is 500"
        in problems
    )
    assert "categories[1].options[1].weight: not used in quota mode" in problems
    assert any(p.startswith("categories[1].options[2].quota: missing") for p in problems)


def test_it_accepts_valid_tables() -> None:
    assert validate_rarity(weighted_table(), max_supply=1) == []
    assert validate_rarity(quota_table(500), max_supply=500) == []
    assert validate_rarity({"mode": "none", "categories": []}, max_supply=5) == []


def test_it_refuses_to_draw_from_an_invalid_table() -> None:
    table = _weighted(**{W + "weight": -2})
    with pytest.raises(InvalidRarityTable, match=r"options\[0\]\.weight: must be > 0"):
        weighted_traits(SEEDS[0], table)
    unequal = quota_table(500)
    unequal["categories"][1]["options"][0]["quota"] = 10
    with pytest.raises(InvalidRarityTable, match="same max_supply in every category"):
        QuotaPool(unequal)


# --- prompt template -------------------------------------------------------------------------


def test_it_lists_template_placeholders() -> None:
    assert template_placeholders("{hat} on {background}, #{token_id:>{eyes}}") == {
        "hat",
        "background",
        "token_id",
        "eyes",
    }
    assert template_placeholders("no fields, {{literal}}") == set()
    with pytest.raises(ValueError):
        template_placeholders("{hat")


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("a {hta} {hat} {eyes}", "prompt_template: unknown placeholder {hta}"),
        ("a {} {hat} {eyes}", "prompt_template: positional placeholder {}"),
        ("a {0} {hat} {eyes}", "prompt_template: positional placeholder {0}"),
        ("a {hat.upper} {eyes}", "placeholder {hat.upper}: attribute and index access"),
        ("a {hat[0]} {eyes}", "placeholder {hat[0]}: attribute and index access"),
        ("a {hat {eyes}", "prompt_template: malformed template"),
        ("a } {hat} {eyes}", "prompt_template: malformed template"),
        ("a {hat:d} {eyes}", "placeholder {hat:d}: format specs and conversions"),
        ("a {hat!r} {eyes}", "placeholder {hat!r}: format specs and conversions"),
        ("{hat} {eyes} #{token_id:>50000000}", "placeholder {token_id:>50000000}: format"),
        ("{hat} {eyes} #{token_id:04d}", "are not allowed; write {token_id}"),
        ("a {eyes}", "category 'hat' (categories[1]) has verify: true"),
        (42, "prompt_template: must be a string"),
    ],
)
def test_it_validates_templates(template: str, fragment: str) -> None:
    problems = validate_template(template, weighted_table())
    assert any(fragment in p for p in problems), problems


def test_it_accepts_a_valid_template() -> None:
    template = "{collection} #{token_id}: portrait, {hat}, {eyes}, {background} {{sic}}"
    assert validate_template(template, weighted_table()) == []


def test_it_renders_the_prompt_fragments() -> None:
    table = weighted_table()
    traits = {"background": "Void", "hat": "Halo", "eyes": "Laser"}
    template = "{collection} #{token_id}: portrait, {hat}, {eyes}, {background} {{sic}}"
    assert (
        render_prompt(template, traits, table, token_id=7, collection="Mintlings")
        == "Mintlings #7: portrait, with a halo, laser eyes, a black void {sic}"
    )
    with pytest.raises(ValueError, match="token_id"):
        render_prompt(template, traits, table, collection="Mintlings")
    with pytest.raises(ValueError, match="not an option"):
        render_prompt("{hat} {eyes}", {**traits, "hat": "Fez"}, table)
    with pytest.raises(ValueError, match="lack category"):
        render_prompt("{hat} {eyes}", {"hat": "Halo", "eyes": "Red"}, table)
    with pytest.raises(ValueError, match="unknown prompt values"):
        render_prompt("{hat} {eyes}", traits, table, style="x")
    with pytest.raises(InvalidRarityTable, match="unknown placeholder"):
        render_prompt("{hat} {eyes} {mood}", traits, table)


# --- probabilities and rarity ----------------------------------------------------------------


def test_it_gives_configured_probabilities() -> None:
    weighted = trait_probabilities(weighted_table(), max_supply=1)
    assert weighted["background"] == pytest.approx({"Blue": 0.7, "Gold": 0.255, "Void": 0.045})
    assert weighted["eyes"] == pytest.approx(
        {"Green": 0.01, "Red": 0.03, "Laser": 0.12, "Closed": 0.84}
    )
    assert list(weighted) == ["background", "hat", "eyes"]
    quota = trait_probabilities(quota_table(500), max_supply=500)
    assert quota["background"] == {"Blue": 435 / 500, "Gold": 60 / 500, "Void": 5 / 500}
    assert quota["hat"]["Never"] == 0.0
    assert trait_probabilities({"mode": "none", "categories": []}, max_supply=3) == {}
    with pytest.raises(InvalidRarityTable, match="max_supply is 400"):
        trait_probabilities(quota_table(500), max_supply=400)


def test_it_scores_rarity_in_bits() -> None:
    table = weighted_table()
    common = rarity({"background": "Blue", "hat": "None", "eyes": "Closed"}, table, max_supply=1)
    rare = rarity({"background": "Void", "hat": "Halo", "eyes": "Green"}, table, max_supply=1)
    assert rare["score"] == pytest.approx(-math.log2(0.045) - math.log2(0.1) - math.log2(0.01))
    assert common["score"] == pytest.approx(-math.log2(0.7 * 0.6 * 0.84))
    assert rare["score"] > common["score"]
    assert rare["probability"] == pytest.approx(0.045 * 0.1 * 0.01)
    assert rare["traits"]["hat"] == {
        "value": "Halo",
        "probability": pytest.approx(0.1),
        "bits": pytest.approx(math.log2(10)),
    }
    with pytest.raises(ValueError, match="lack category"):
        rarity({"background": "Void"}, table, max_supply=1)


def test_it_builds_opensea_attributes_in_table_order_and_their_rarity_beside_them() -> None:
    table = weighted_table()
    traits = {"eyes": "Red", "hat": "Crown", "background": "Gold"}
    # only OpenSea's keys in an attribute
    assert attributes(traits, table, max_supply=1) == [
        {"trait_type": "background", "value": "Gold"},
        {"trait_type": "hat", "value": "Crown"},
        {"trait_type": "eyes", "value": "Red"},
    ]
    assert list(trait_rarity(traits, table, max_supply=1).items()) == [
        ("background", 0.255),
        ("hat", 0.3),
        ("eyes", 0.03),
    ]
    third = {
        "mode": "weighted",
        "categories": [
            {
                "name": "c",
                "options": [
                    {"name": "a", "prompt": "", "weight": 1},
                    {"name": "b", "prompt": "", "weight": 2},
                ],
            }
        ],
    }
    assert trait_rarity({"c": "a"}, third, max_supply=1) == {"c": 0.333333}
    with pytest.raises(ValueError, match="not an option"):
        attributes({**traits, "eyes": "Blue"}, table, max_supply=1)
    with pytest.raises(ValueError, match="not an option"):
        trait_rarity({**traits, "eyes": "Blue"}, table, max_supply=1)


# --- properties ------------------------------------------------------------------------------

_names = st.text(
    alphabet=st.characters(blacklist_characters="{}[].:!", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
).filter(
    lambda s: (
        s == s.strip() and s.strip() and not s.isdigit() and s not in ("token_id", "collection")
    )
)


@st.composite
def weighted_tables(draw: st.DrawFn) -> dict:
    category_names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    categories = []
    for name in category_names:
        option_names = draw(st.lists(_names, min_size=1, max_size=6, unique=True))
        weights = draw(
            st.lists(
                st.one_of(st.integers(1, 10**6), st.floats(1e-3, 1e6)),
                min_size=len(option_names),
                max_size=len(option_names),
            )
        )
        categories.append(
            {
                "name": name,
                "options": [
                    {"name": o, "prompt": o, "weight": w}
                    for o, w in zip(option_names, weights, strict=True)
                ],
            }
        )
    return {"mode": "weighted", "categories": categories}


@settings(max_examples=100, deadline=None)
@given(s=st.binary(max_size=64), table=weighted_tables())
def test_it_always_draws_an_option_of_every_category(s: bytes, table: dict) -> None:
    assert validate_rarity(table, max_supply=1) == []
    traits = weighted_traits(s, table)
    assert list(traits) == [c["name"] for c in table["categories"]]
    for category in table["categories"]:
        assert traits[category["name"]] in {o["name"] for o in category["options"]}
    assert weighted_traits(s, table) == traits


@settings(max_examples=60, deadline=None)
@given(
    quotas=st.lists(st.integers(0, 12), min_size=1, max_size=5).filter(lambda q: sum(q) > 0),
    salt=st.integers(0, 2**32),
)
def test_it_meets_arbitrary_quotas_exactly(quotas: list[int], salt: int) -> None:
    supply = sum(quotas)
    table = {
        "mode": "quota",
        "categories": [
            {
                "name": "c",
                "options": [
                    {"name": f"o{i}", "prompt": "", "quota": q} for i, q in enumerate(quotas)
                ],
            }
        ],
    }
    seeds = [seed(salt * 1000 + k) for k in range(supply)]
    counts = Counter(t["c"] for t in quota_traits(seeds, table))
    assert [counts[f"o{i}"] for i in range(len(quotas))] == quotas
