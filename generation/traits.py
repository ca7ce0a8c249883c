"""Traits and rarity: a pure, documented function of (seed, rarity table).

Nothing here imports Django; a verifier in any language can reimplement it from this text.

Rarity table
============

A JSON object, stored in the collection's generation config and frozen on-chain by digest::

    {"mode": "weighted" | "quota" | "none",
     "categories": [
        {"name": str, "verify": bool,            # verify is optional, default false
         "options": [{"name": str, "prompt": str, "weight": number}, ...]}   # weighted
         "options": [{"name": str, "prompt": str, "quota": int}, ...]}       # quota
     ]}

``"none"`` means no traits: ``categories`` must be ``[]``. ``weighted`` and ``quota`` need at
least one category, each with at least one option. No other keys are allowed at any level.
Category names must be usable as ``{placeholders}`` in the prompt template: non-empty, no
leading or trailing whitespace, none of ``{ } [ ] . : !``, not all digits, and not the reserved
names ``token_id`` or ``collection``. Option names are non-empty, without leading or trailing
whitespace, and unique within their category. ``prompt`` is the text the option puts into the
prompt template (it may be empty). :func:`validate_rarity` lists every problem.

PRNG
====

All randomness comes from SHA-256. ``‖`` is byte concatenation and ``uint32be(x)`` is x as 4
big-endian bytes. For a seed (any bytes; on-chain seeds are 32 bytes), a category name
``name`` and a counter ``c = 0, 1, 2, ...``::

    block(seed, name, c) = sha256(uint32be(len(seed)) ‖ seed
                                  ‖ uint32be(len(utf8(name))) ‖ utf8(name)
                                  ‖ uint32be(c))
    u(seed, name, c)     = the first 8 bytes of block(seed, name, c) as a big-endian
                           unsigned integer, 0 <= u < 2**64

``uniform_below(seed, name, n)`` (``1 <= n <= 2**64``) returns an integer uniform on
``[0, n)`` without modulo bias, by rejection: with ``limit = 2**64 - (2**64 mod n)``, take
``c = 0, 1, 2, ...`` in turn and return ``u(seed, name, c) mod n`` for the first ``c`` with
``u(seed, name, c) < limit``.

``pick(seed, name, counts)`` for non-negative integers ``counts[0..m-1]`` in table order with
``T = sum(counts) >= 1``: ``r = uniform_below(seed, name, T)``, and the result is the smallest
index ``i`` with ``r < counts[0] + ... + counts[i]`` (so an option with count 0 is never picked
and option i is picked with probability exactly ``counts[i] / T``).

Test vector: seed = 32 zero bytes, name = ``background``: the hashed message is
``00000020 || 00…00 (32 bytes) || 0000000a || "background" || 00000000``, its SHA-256 starts
``bab4b267b10b1af2``, so ``u = 13453574145284184818`` and, for ``n = 10**8`` (``limit`` is
``2**64 - 9551616``, u is below it), ``uniform_below = 84184818``.

Each category's draw is keyed by the category's *name*, so the order of the categories in the
table does not change any draw; the order of the *options* does.

Weighted mode
=============

A weight is a JSON number, taken as the IEEE-754 binary64 value any JSON parser yields (JSON
integers are exact: every weight is at most 10**12 < 2**53). Its fixed-point integer weight is
``W = round_half_even(exact value of weight × 10**6)``, computed exactly (no floating-point
multiplication). Every weight must be finite and > 0 and give ``W >= 1`` (that is, be more than
0.0000005, since exactly 0.5 rounds to even 0); each category's weights must sum to at most 10**12, so
``T = sum(W) <= 10**18 < 2**64``.

``weighted_traits(seed, table)[name] = options[pick(seed, name, [W_0, ..., W_{m-1}])].name``
for every category, independently. The draw probability of option i is exactly ``W_i / T``.

Quota mode
==========

Quotas are non-negative JSON integers, and each category's quotas sum to the collection's
``max_supply``. Tokens are processed in token-id order, 1, 2, ... . For each category, keep
``remaining = [quota_0, ..., quota_{m-1}]``; token k (1-based) gets option
``i = pick(seed_k, name, remaining)``, then ``remaining[i] -= 1``. After ``max_supply`` tokens
every option has been given exactly its quota; token k's traits depend only on the seeds of
tokens 1..k (adding later tokens never changes them), and replaying the same seeds gives the
same assignment. More than ``max_supply`` tokens is an error.

Probabilities and rarity
========================

The *configured* probability of an option (never counted from minted tokens) is
``W_i / T`` in weighted mode (the exact draw probability, from the fixed-point weights) and
``quota_i / max_supply`` in quota mode (the option's share of the supply, i.e. the marginal
probability of any one token). A token's rarity score is
``sum over categories of -log2(p)`` in bits, where p is the probability of its option; higher
is rarer. A category with a single option contributes 0 bits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from generation.errors import InvalidRarityTable

__all__ = [
    "MAX_WEIGHT_TOTAL",
    "MODES",
    "RESERVED_PLACEHOLDERS",
    "WEIGHT_SCALE",
    "InvalidRarityTable",
    "QuotaPool",
    "attributes",
    "fixed_point_weight",
    "pick",
    "quota_traits",
    "quota_traits_for",
    "rarity",
    "render_prompt",
    "template_placeholders",
    "token_traits",
    "trait_probabilities",
    "trait_rarity",
    "uniform_below",
    "validate_rarity",
    "validate_template",
    "weighted_traits",
]

MODES = ("weighted", "quota", "none")
WEIGHT_SCALE = 10**6
"""Fixed-point factor of the weights: ``W = round_half_even(weight × WEIGHT_SCALE)``."""
MAX_WEIGHT_TOTAL = 10**12
"""Largest sum of one category's weights (before scaling), so ``T <= 10**18 < 2**64``."""
RESERVED_PLACEHOLDERS = frozenset({"token_id", "collection"})
"""Placeholders the prompt template may use besides the category names."""

_TOP_KEYS = frozenset({"mode", "categories"})
_CATEGORY_KEYS = frozenset({"name", "verify", "options"})
_OPTION_KEYS = {
    "weighted": frozenset({"name", "prompt", "weight"}),
    "quota": frozenset({"name", "prompt", "quota"}),
}
_NAME_FORBIDDEN = set("{}[].:!")
_U64 = 2**64


# --------------------------------------------------------------------------------------------
# PRNG


def _u64(seed: bytes, name: str, counter: int) -> int:
    name_bytes = name.encode("utf-8")
    block = hashlib.sha256(
        len(seed).to_bytes(4, "big")
        + seed
        + len(name_bytes).to_bytes(4, "big")
        + name_bytes
        + counter.to_bytes(4, "big")
    ).digest()
    return int.from_bytes(block[:8], "big")


def uniform_below(seed: bytes, name: str, n: int) -> int:
    """An integer uniform on ``[0, n)`` from the PRNG keyed by (seed, name); see the module doc.

    ``limit = 2**64 - (2**64 mod n)``; for ``c = 0, 1, ...`` return ``u(seed, name, c) mod n``
    for the first ``c`` with ``u(seed, name, c) < limit`` (rejection: no modulo bias).
    """
    if not isinstance(seed, bytes | bytearray):
        raise TypeError(f"seed must be bytes, got {type(seed).__name__}")
    if not 1 <= n <= _U64:
        raise ValueError(f"n must be in [1, 2**64], got {n}")
    seed = bytes(seed)
    limit = _U64 - (_U64 % n)
    counter = 0
    while True:
        u = _u64(seed, name, counter)
        if u < limit:
            return u % n
        counter += 1


def pick(seed: bytes, name: str, counts: Sequence[int]) -> int:
    """Index of the option drawn with probability ``counts[i] / sum(counts)``.

    ``r = uniform_below(seed, name, sum(counts))``; the result is the smallest ``i`` with
    ``r < counts[0] + ... + counts[i]``. Counts are non-negative integers summing to >= 1.
    """
    total = sum(counts)
    if total < 1 or any(c < 0 for c in counts):
        raise ValueError(f"counts must be non-negative with a positive sum, got {list(counts)}")
    r = uniform_below(seed, name, total)
    cumulative = 0
    for i, count in enumerate(counts):
        cumulative += count
        if r < cumulative:
            return i
    raise AssertionError("unreachable: r < total")  # pragma: no cover


def fixed_point_weight(weight: float) -> int:
    """``round_half_even(weight × 10**6)``, exact on the binary64 (or integer) value."""
    return round(Fraction(weight) * WEIGHT_SCALE)


# --------------------------------------------------------------------------------------------
# Validation


def _show(value: Any) -> str:
    if isinstance(value, bool | int | float | str) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_name(value: Any, path: str, *, placeholder: bool) -> str | None:
    """The problem with a category/option name, or None."""
    if not isinstance(value, str):
        return f"{path}: must be a string, got {_show(value)}"
    if not value.strip():
        return f"{path}: must not be empty"
    if value != value.strip():
        return f"{path}: must not start or end with whitespace, got {value!r}"
    if placeholder:
        bad = sorted(_NAME_FORBIDDEN & set(value))
        if bad:
            return (
                f"{path}: must not contain {' '.join(bad)} (it is a prompt-template "
                f"placeholder), got {value!r}"
            )
        if value.isdigit():
            return f"{path}: must not be all digits (it is a prompt-template placeholder), got {value!r}"
        if value in RESERVED_PLACEHOLDERS:
            return f"{path}: {value!r} is reserved for the prompt template"
    return None


def _check_weights(options: list[Any], path: str, problems: list[str]) -> None:
    total = Fraction(0)
    all_ok = True
    for j, option in enumerate(options):
        if not isinstance(option, dict):
            all_ok = False
            continue
        where = f"{path}.options[{j}].weight"
        if "weight" not in option:
            problems.append(f"{where}: missing (weighted mode needs a weight for every option)")
            all_ok = False
            continue
        weight = option["weight"]
        if not _is_number(weight):
            problems.append(f"{where}: must be a number, got {_show(weight)}")
            all_ok = False
        elif not math.isfinite(weight):
            problems.append(f"{where}: must be finite, got {weight!r}")
            all_ok = False
        elif weight <= 0:
            problems.append(f"{where}: must be > 0, got {weight!r}")
            all_ok = False
        elif fixed_point_weight(weight) < 1:
            problems.append(
                f"{where}: too small, rounds to 0 at the fixed-point resolution "
                f"1/{WEIGHT_SCALE} (must be more than 0.0000005), got {weight!r}"
            )
            all_ok = False
        else:
            total += Fraction(weight)
    if all_ok and total > MAX_WEIGHT_TOTAL:
        problems.append(
            f"{path}.options: weights sum to {float(total):g}, more than the maximum "
            f"{MAX_WEIGHT_TOTAL:g}"
        )


def _check_quotas(options: list[Any], path: str, problems: list[str]) -> int | None:
    """Checks the quotas; returns their sum when every one is valid."""
    total = 0
    all_ok = True
    for j, option in enumerate(options):
        if not isinstance(option, dict):
            all_ok = False
            continue
        where = f"{path}.options[{j}].quota"
        if "quota" not in option:
            problems.append(f"{where}: missing (quota mode needs a quota for every option)")
            all_ok = False
            continue
        quota = option["quota"]
        if not isinstance(quota, int) or isinstance(quota, bool):
            problems.append(f"{where}: must be an integer, got {_show(quota)}")
            all_ok = False
        elif quota < 0:
            problems.append(f"{where}: must be >= 0, got {quota!r}")
            all_ok = False
        else:
            total += quota
    return total if all_ok else None


def _check(table: Any, max_supply: int | None) -> list[str]:
    problems: list[str] = []
    if not isinstance(table, dict):
        return [f"rarity: must be an object, got {_show(table)}"]
    for key in sorted(set(table) - _TOP_KEYS, key=str):
        problems.append(f"{key}: unknown key (allowed: categories, mode)")
    mode = table.get("mode")
    if "mode" not in table:
        problems.append("mode: missing (one of 'weighted', 'quota', 'none')")
        mode = None
    elif mode not in MODES:
        problems.append(f"mode: must be one of 'weighted', 'quota', 'none', got {_show(mode)}")
        mode = None
    if "categories" not in table:
        problems.append("categories: missing (a list; [] when mode is 'none')")
        return problems
    categories = table["categories"]
    if not isinstance(categories, list):
        problems.append(f"categories: must be a list, got {_show(categories)}")
        return problems
    if mode == "none" and categories:
        problems.append(f"categories: must be empty when mode is 'none', got {len(categories)}")
        return problems
    if mode in ("weighted", "quota") and not categories:
        problems.append(
            f"categories: {mode} mode needs at least one category (use mode 'none' for no traits)"
        )
    seen: dict[str, int] = {}
    sums: list[tuple[str, int]] = []
    for i, category in enumerate(categories):
        path = f"categories[{i}]"
        if not isinstance(category, dict):
            problems.append(f"{path}: must be an object, got {_show(category)}")
            continue
        for key in sorted(set(category) - _CATEGORY_KEYS, key=str):
            problems.append(f"{path}.{key}: unknown key (allowed: name, options, verify)")
        name: str | None = None
        if "name" not in category:
            problems.append(f"{path}.name: missing")
        elif problem := _check_name(category["name"], f"{path}.name", placeholder=True):
            problems.append(problem)
        else:
            name = str(category["name"])  # _check_name let only a string through
            if name in seen:
                problems.append(
                    f"{path}.name: duplicate category name {name!r} (also categories[{seen[name]}])"
                )
            else:
                seen[name] = i
        if "verify" in category and not isinstance(category["verify"], bool):
            problems.append(
                f"{path}.verify: must be true or false, got {_show(category['verify'])}"
            )
        if "options" not in category:
            problems.append(f"{path}.options: missing")
            continue
        options = category["options"]
        if not isinstance(options, list):
            problems.append(f"{path}.options: must be a list, got {_show(options)}")
            continue
        if not options:
            problems.append(f"{path}.options: must not be empty")
            continue
        option_seen: dict[str, int] = {}
        for j, option in enumerate(options):
            opath = f"{path}.options[{j}]"
            if not isinstance(option, dict):
                problems.append(f"{opath}: must be an object, got {_show(option)}")
                continue
            if mode in _OPTION_KEYS:
                allowed = _OPTION_KEYS[mode]
                for key in sorted(set(option) - allowed, key=str):
                    other = "quota" if mode == "weighted" else "weighted"
                    if key in _OPTION_KEYS[other]:
                        problems.append(f"{opath}.{key}: not used in {mode} mode")
                    else:
                        problems.append(
                            f"{opath}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})"
                        )
            if "name" not in option:
                problems.append(f"{opath}.name: missing")
            else:
                oname = option["name"]
                problem = _check_name(oname, f"{opath}.name", placeholder=False)
                if problem:
                    problems.append(problem)
                elif oname in option_seen:
                    problems.append(
                        f"{opath}.name: duplicate option name {oname!r} "
                        f"(also {path}.options[{option_seen[oname]}])"
                    )
                else:
                    option_seen[oname] = j
            if "prompt" not in option:
                problems.append(f"{opath}.prompt: missing")
            elif not isinstance(option["prompt"], str):
                problems.append(f"{opath}.prompt: must be a string, got {_show(option['prompt'])}")
        if mode == "weighted":
            _check_weights(options, path, problems)
        elif mode == "quota":
            total = _check_quotas(options, path, problems)
            if total is not None:
                label = repr(name) if name is not None else path
                if max_supply is not None and total != max_supply:
                    problems.append(
                        f"{path}.options: quotas of category {label} sum to {total}, "
                        f"but max_supply is {max_supply}"
                    )
                sums.append((label, total))
    if mode == "quota" and max_supply is None and len({s for _, s in sums}) > 1:
        listed = ", ".join(f"{label}: {s}" for label, s in sums)
        problems.append(
            f"categories: quotas must sum to the same max_supply in every category ({listed})"
        )
    return problems


def validate_rarity(table: dict[str, Any], *, max_supply: int) -> list[str]:
    """Every problem with a rarity table, each message starting with the field's path.

    Paths look like ``categories[1].options[0].weight``. Checked: the table and its
    categories/options are objects with no unknown keys; ``mode`` is one of
    ``weighted``/``quota``/``none``; ``categories`` is a list (empty iff mode is ``none``);
    category names are valid, non-reserved placeholder names, unique; option names are
    non-empty and unique within their category; ``prompt`` is a string; ``verify``, when
    present, is a bool; weighted mode: every weight is a finite number > 0 with a fixed-point
    value >= 1 and each category's weights sum to at most ``MAX_WEIGHT_TOTAL``; quota mode:
    every quota is an integer >= 0 and each category's quotas sum to ``max_supply``.
    An empty list means the table is valid.
    """
    if not isinstance(max_supply, int) or isinstance(max_supply, bool) or max_supply < 1:
        return [f"max_supply: must be a positive integer, got {_show(max_supply)}"]
    return _check(table, max_supply)


@dataclass(frozen=True)
class _Category:
    name: str
    verify: bool
    options: tuple[str, ...]
    prompts: tuple[str, ...]
    counts: tuple[int, ...]  # fixed-point weights, or quotas


def _prepare(table: dict[str, Any], mode: str | None = None) -> tuple[_Category, ...]:
    """The validated table's categories; raises InvalidRarityTable (a ValueError) if invalid.

    Memoized on the table's JSON text, so drawing many tokens validates the table once.
    """
    try:
        key = json.dumps(table, sort_keys=True)
    except (TypeError, ValueError):
        prepared, table_mode = _prepare_uncached(table)
    else:
        prepared, table_mode = _prepare_json(key)
    if mode is not None and table_mode != mode:
        raise ValueError(f"expected a rarity table in {mode} mode, got mode {table_mode!r}")
    return prepared


@functools.lru_cache(maxsize=64)
def _prepare_json(key: str) -> tuple[tuple[_Category, ...], str]:
    return _prepare_uncached(json.loads(key))


def _prepare_uncached(table: Any) -> tuple[tuple[_Category, ...], str]:
    problems = _check(table, None)
    if problems:
        raise InvalidRarityTable(problems)
    key = "weight" if table["mode"] == "weighted" else "quota"
    prepared = []
    for category in table["categories"]:
        options = category["options"]
        counts = tuple(
            fixed_point_weight(o[key]) if key == "weight" else int(o[key]) for o in options
        )
        prepared.append(
            _Category(
                name=category["name"],
                verify=category.get("verify", False),
                options=tuple(o["name"] for o in options),
                prompts=tuple(o["prompt"] for o in options),
                counts=counts,
            )
        )
    return tuple(prepared), table["mode"]


# --------------------------------------------------------------------------------------------
# Draws


def weighted_traits(seed: bytes, table: dict[str, Any]) -> dict[str, str]:
    """Category name → option name, one independent draw per category (weighted mode).

    For each category: ``options[pick(seed, name, [W_0, ..., W_{m-1}])]`` with the
    fixed-point weights ``W_i = round_half_even(weight_i × 10**6)`` in table order (module
    doc). Keys come out in table order. Raises ValueError for an invalid or non-weighted table.
    """
    return {c.name: c.options[pick(seed, c.name, c.counts)] for c in _prepare(table, "weighted")}


class QuotaPool:
    """The quota-mode pool, drawn from one token at a time in token-id order.

    ``draw(seed_k)`` must be called with the seeds of tokens 1, 2, ... in order: for each
    category it picks ``i = pick(seed_k, name, remaining)`` and decrements ``remaining[i]``.
    """

    def __init__(self, table: dict[str, Any]) -> None:
        self._categories = _prepare(table, "quota")
        self._remaining = {c.name: list(c.counts) for c in self._categories}
        self.max_supply = sum(self._categories[0].counts)
        self.drawn = 0
        """How many tokens have drawn so far (the next draw is token ``drawn + 1``)."""

    def draw(self, seed: bytes) -> dict[str, str]:
        """Token ``drawn + 1``'s traits (category → option name, table order)."""
        if self.drawn >= self.max_supply:
            raise ValueError(f"the quota pool is exhausted: max_supply is {self.max_supply}")
        traits = {}
        for category in self._categories:
            remaining = self._remaining[category.name]
            i = pick(seed, category.name, remaining)
            remaining[i] -= 1
            traits[category.name] = category.options[i]
        self.drawn += 1
        return traits

    def remaining(self) -> dict[str, dict[str, int]]:
        """Category → option → how many tokens may still get it."""
        return {
            c.name: dict(zip(c.options, self._remaining[c.name], strict=True))
            for c in self._categories
        }


def quota_traits(
    seeds_in_token_order: Sequence[bytes], table: dict[str, Any]
) -> list[dict[str, str]]:
    """Traits of tokens 1..n in quota mode, given their seeds in token-id order.

    Token k draws from the counts left by tokens 1..k-1 (see :class:`QuotaPool`). Over
    ``max_supply`` tokens every option is given exactly its quota. Raises ValueError for an
    invalid or non-quota table, or for more seeds than ``max_supply``.
    """
    pool = QuotaPool(table)
    return [pool.draw(seed) for seed in seeds_in_token_order]


def quota_traits_for(
    k: int, seeds_1_to_k: Sequence[bytes], table: dict[str, Any]
) -> dict[str, str]:
    """Token k's traits in quota mode (1-based), from the seeds of tokens 1..k (at least k)."""
    if k < 1 or len(seeds_1_to_k) < k:
        raise ValueError(f"token {k} needs the seeds of tokens 1..{k}, got {len(seeds_1_to_k)}")
    return quota_traits(seeds_1_to_k[:k], table)[k - 1]


def token_traits(k: int, seeds_1_to_k: Sequence[bytes], table: dict[str, Any]) -> dict[str, str]:
    """Token k's traits in any mode: weighted uses only ``seeds_1_to_k[k-1]``; none gives ``{}``.

    Quota mode needs the seeds of tokens 1..k, so token k cannot be drawn before every earlier
    token's seed is committed.
    """
    if k < 1 or len(seeds_1_to_k) < k:
        raise ValueError(f"token {k} needs the seeds of tokens 1..{k}, got {len(seeds_1_to_k)}")
    _prepare(table)
    if table["mode"] == "none":
        return {}
    if table["mode"] == "weighted":
        return weighted_traits(seeds_1_to_k[k - 1], table)
    return quota_traits_for(k, seeds_1_to_k, table)


# --------------------------------------------------------------------------------------------
# Probabilities and rarity


def trait_probabilities(table: dict[str, Any], *, max_supply: int) -> dict[str, dict[str, float]]:
    """Category → option → configured probability, in table order.

    Weighted: ``W_i / T`` with the fixed-point weights (exactly the draw's probability).
    Quota: ``quota_i / max_supply``. None: ``{}``. Raises ValueError for an invalid table.
    """
    problems = validate_rarity(table, max_supply=max_supply)
    if problems:
        raise InvalidRarityTable(problems)
    categories = _prepare(table)
    result: dict[str, dict[str, float]] = {}
    for c in categories:
        total = sum(c.counts) if table["mode"] == "weighted" else max_supply
        result[c.name] = {
            option: float(Fraction(count, total))
            for option, count in zip(c.options, c.counts, strict=True)
        }
    return result


def _checked_traits(traits: Mapping[str, str], probabilities: dict[str, dict[str, float]]) -> None:
    extra = sorted(set(traits) - set(probabilities))
    if extra:
        raise ValueError(f"traits name unknown categories: {extra}")
    for category, options in probabilities.items():
        if category not in traits:
            raise ValueError(f"traits lack category {category!r}")
        if traits[category] not in options:
            raise ValueError(f"{traits[category]!r} is not an option of category {category!r}")


def rarity(traits: Mapping[str, str], table: dict[str, Any], *, max_supply: int) -> dict[str, Any]:
    """A token's rarity from the configured probabilities (never from counting minted tokens).

    Returns ``{"traits": {category: {"value": option, "probability": p, "bits": -log2(p)}},
    "probability": product of the p, "score": sum of the bits}``, categories in table order.
    ``score`` (bits) is higher for rarer tokens; in quota mode p is the option's share of the
    supply. Raises ValueError if ``traits`` does not give every category one of its options.
    """
    probabilities = trait_probabilities(table, max_supply=max_supply)
    _checked_traits(traits, probabilities)
    per_trait: dict[str, dict[str, Any]] = {}
    score = 0.0
    product = 1.0
    for category, options in probabilities.items():
        p = options[traits[category]]
        if p <= 0:  # a quota-0 option, which no token can get
            raise ValueError(f"option {traits[category]!r} of {category!r} has probability 0")
        bits = -math.log2(p)
        per_trait[category] = {"value": traits[category], "probability": p, "bits": bits}
        score += bits
        product *= p
    return {"traits": per_trait, "probability": product, "score": score}


def attributes(
    traits: Mapping[str, str], table: dict[str, Any], *, max_supply: int
) -> list[dict[str, Any]]:
    """OpenSea's ``[{"trait_type": category, "value": option}]``, in table order.

    Nothing else goes in an attribute: marketplaces read only ``trait_type``, ``value``,
    ``display_type`` and ``max_value``, and an option is a name, so neither of the last two
    applies. The figures :func:`trait_rarity` gives sit beside them. Raises ValueError if
    ``traits`` does not give every category one of its options.
    """
    probabilities = trait_probabilities(table, max_supply=max_supply)
    _checked_traits(traits, probabilities)
    return [{"trait_type": category, "value": traits[category]} for category in probabilities]


def trait_rarity(
    traits: Mapping[str, str], table: dict[str, Any], *, max_supply: int
) -> dict[str, float]:
    """Each category's configured probability of the token's option (see
    :func:`trait_probabilities`), rounded to 6 decimals, keyed by ``trait_type``: the
    metadata's top-level ``rarity``. Raises ValueError like :func:`attributes`.
    """
    probabilities = trait_probabilities(table, max_supply=max_supply)
    _checked_traits(traits, probabilities)
    return {
        category: round(options[traits[category]], 6) for category, options in probabilities.items()
    }


# --------------------------------------------------------------------------------------------
# Prompt template


def template_placeholders(template: str) -> set[str]:
    """The field names of a ``str.format`` template, including those nested in format specs.

    ``"{hat} on {token_id:>{width}}"`` gives ``{"hat", "token_id", "width"}``; ``"{}"`` gives
    ``{""}``. Raises ValueError for a malformed template (e.g. a lone ``}``).
    """
    names: set[str] = set()
    formatter = string.Formatter()
    for _literal, field, spec, _conversion in formatter.parse(template):
        if field is None:
            continue
        names.add(field)
        if spec:
            names |= template_placeholders(spec)
    return names


def _category_names(table: Any) -> list[tuple[int, str, bool]]:
    """(index, name, verify) of the categories whose names are valid, best effort."""
    found = []
    if isinstance(table, dict) and isinstance(table.get("categories"), list):
        for i, category in enumerate(table["categories"]):
            if isinstance(category, dict) and isinstance(category.get("name"), str):
                found.append((i, category["name"], category.get("verify") is True))
    return found


def _placeholder_text(field: str, spec: str | None, conversion: str | None) -> str:
    """A parsed replacement field written back as the template had it."""
    return (
        "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    )


def validate_template(template: str, table: dict[str, Any]) -> list[str]:
    """Every problem with a prompt template, each message starting with ``prompt_template``.

    A template is text with plain ``{name}`` placeholders; ``{{`` and ``}}`` stand for literal
    braces. Allowed names: each category name, ``token_id`` and ``collection``. Reported: a
    template that is not a string or is malformed; positional (``{}``, ``{0}``) or unknown
    placeholders; attribute or index access (``{hat.x}``, ``{hat[0]}``); format specs and
    conversions (``{token_id:>50000000}``, ``{hat!r}``: a width alone can make a prompt of any
    size); a category with ``verify: true`` that the template never uses (CLIP could not find
    it).
    """
    if not isinstance(template, str):
        return [f"prompt_template: must be a string, got {_show(template)}"]
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"prompt_template: malformed template: {exc}"]
    categories = _category_names(table)
    allowed = {name for _, name, _ in categories} | RESERVED_PLACEHOLDERS
    problems = []
    fields = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        fields.add(field)
        if spec or conversion:
            problems.append(
                f"prompt_template: placeholder {_placeholder_text(field, spec, conversion)}: "
                f"format specs and conversions are not allowed; write {{{field}}}"
            )
    for field in sorted(fields):
        if field == "" or field.isdigit():
            problems.append(
                f"prompt_template: positional placeholder {{{field}}} is not allowed; "
                "use a category name, token_id or collection"
            )
        elif field not in allowed:
            if field.split(".")[0].split("[")[0] in allowed:
                problems.append(
                    f"prompt_template: placeholder {{{field}}}: attribute and index access "
                    "are not allowed"
                )
            else:
                problems.append(
                    f"prompt_template: unknown placeholder {{{field}}} "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )
    if problems:
        return problems
    for i, name, verify in categories:
        if verify and name not in fields:
            problems.append(
                f"prompt_template: category {name!r} (categories[{i}]) has verify: true "
                f"but the template has no {{{name}}} placeholder"
            )
    return problems


def render_prompt(
    template: str, traits: Mapping[str, str], table: dict[str, Any], **extra: Any
) -> str:
    """The prompt: ``template`` with ``{category}`` replaced by the chosen option's ``prompt``.

    ``extra`` may give ``token_id`` and ``collection``, each written as ``str()`` writes it;
    ``{{`` and ``}}`` give literal braces, and nothing else changes (a template with format
    specs, conversions, attribute or index access is refused, see :func:`validate_template`).
    Raises ValueError for an invalid table or template, traits that do not give every category
    one of its options, an unknown ``extra`` name, or a placeholder the template uses but
    ``extra`` does not give.
    """
    categories = _prepare(table)
    problems = validate_template(template, table)
    if problems:
        raise InvalidRarityTable(problems)
    unknown = sorted(set(extra) - RESERVED_PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown prompt values {unknown} (allowed: collection, token_id)")
    names = {c.name for c in categories}
    extra_traits = sorted(set(traits) - names)
    if extra_traits:
        raise ValueError(f"traits name unknown categories: {extra_traits}")
    values: dict[str, Any] = dict(extra)
    for c in categories:
        if c.name not in traits:
            raise ValueError(f"traits lack category {c.name!r}")
        try:
            values[c.name] = c.prompts[c.options.index(traits[c.name])]
        except ValueError:
            raise ValueError(
                f"{traits[c.name]!r} is not an option of category {c.name!r}"
            ) from None
    missing = sorted(template_placeholders(template) - set(values))
    if missing:
        raise ValueError(f"the template uses {missing} but no value was given for it")
    return "".join(
        literal + (str(values[field]) if field is not None else "")
        for literal, field, _spec, _conversion in string.Formatter().parse(template)
    )
