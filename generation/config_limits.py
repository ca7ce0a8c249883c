"""How much text a manager may put into a collection's config, and of what kind.

Every token's metadata must fit in one IPFS chunk (262,144 bytes, ``ipfs.cid.CHUNK_SIZE``): the
contract names it by the sha256 of its bytes, which only a single raw block has. The metadata
repeats the config's text — the name, the description, the rendered prompt, the negative
prompt, each category and option name (in ``attributes``, the top-level ``rarity`` (category
names only), ``provenance.traits``, ``provenance.rarity`` and the CLIP scores of verified
categories), and, for a token a manager
approved, the gate's reasons, which quote the style prompt and name each verified category's
assigned and rival options. With only printable characters allowed (plus newline, carriage
return and tab in the multi-line fields), one character costs at most 4 bytes there, even
inside a quoted reason (an astral character is 4 bytes of UTF-8; ``"`` and ``\\`` are escaped
to 2, a tab in a repr to 3). So the limits below bound the metadata, per category and in all:

- per category, at most 4 x (3 x 64 names, quoted 2 x in scores and thresholds, 1 x in each
  of attributes, traits, rarity and a reason, and the category's name once more in the
  top-level rarity) plus its fixed keys and numbers: about 3.7 KB; 32 categories: about 117 KB;
- name 4 x (200 + 80 for " #" and a uint256 token id), description 4 x 5,000, rendered prompt
  4 x 2,000, negative prompt 4 x 1,000, the style reason 4 x 1,000 plus the fixed provenance
  and the token page's URL (``external_url``: the operator's ``WEB_URL``, a slug of at most 50
  characters and the token id): about 40 KB;

about 157 KB in all, 60 % of the chunk. ``tests/test_config_limits.py`` renders, approves and
pins a token of a maximal config through the real pipeline and checks the bytes.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

NAME_MAX = 200  # the collection's name (Collection.name's max_length)
DESCRIPTION_MAX = 5_000
PROMPT_TEMPLATE_MAX = 1_000
PROMPT_MAX = 2_000  # the longest prompt the template can render, with the longest fragments
NEGATIVE_PROMPT_MAX = 1_000
STYLE_PROMPT_MAX = 1_000
CATEGORIES_MAX = 32
OPTIONS_MAX = 500  # per category (only the contract metadata holds them all)
TRAIT_NAME_MAX = 64  # a category's or an option's name
TRAIT_PROMPT_MAX = 300  # an option's prompt fragment
STYLE_IMAGES_MAX = 16
PATH_MAX = 500  # a model, config, CLIP or style image path
TOKEN_ID_DIGITS = 78  # a uint256 in decimal: what {token_id} can put into a prompt


def _bad_character(value: str, *, multiline: bool) -> str | None:
    for char in value:
        if not (char.isprintable() or (multiline and char in "\n\r\t")):
            return f"U+{ord(char):04X}"
    return None


def text_problem(value: Any, max_chars: int, *, multiline: bool = False) -> str | None:
    """What is wrong with ``value`` as manager-set text, or None."""
    if not isinstance(value, str):
        return "must be text"
    if len(value) > max_chars:
        return f"at most {max_chars} characters, got {len(value)}"
    bad = _bad_character(value, multiline=multiline)
    if bad is not None:
        allowed = "printable characters, line breaks and tabs" if multiline else "printable"
        return f"only {allowed} characters are allowed, got {bad}"
    return None


def printable_line(value: str) -> None:
    """A field validator: one line of printable text (its length is the field's own)."""
    if (bad := _bad_character(value, multiline=False)) is not None:
        raise ValidationError(f"only printable characters are allowed, got {bad}")


def printable_text(value: str) -> None:
    """A field validator: printable text, line breaks and tabs."""
    if (bad := _bad_character(value, multiline=True)) is not None:
        raise ValidationError(
            f"only printable characters, line breaks and tabs are allowed, got {bad}"
        )


def rarity_problems(table: dict[str, Any]) -> list[str]:
    """The limits a valid rarity table (``generation.traits.validate_rarity``) must also keep,
    each message starting with the path of what is too long."""
    categories = table["categories"]
    problems = []
    if len(categories) > CATEGORIES_MAX:
        problems.append(f"categories: at most {CATEGORIES_MAX}, got {len(categories)}")
    for i, category in enumerate(categories):
        path = f"categories[{i}]"
        if problem := text_problem(category["name"], TRAIT_NAME_MAX):
            problems.append(f"{path}.name: {problem}")
        options = category["options"]
        if len(options) > OPTIONS_MAX:
            problems.append(f"{path}.options: at most {OPTIONS_MAX}, got {len(options)}")
        for j, option in enumerate(options):
            if problem := text_problem(option["name"], TRAIT_NAME_MAX):
                problems.append(f"{path}.options[{j}].name: {problem}")
            if problem := text_problem(option["prompt"], TRAIT_PROMPT_MAX):
                problems.append(f"{path}.options[{j}].prompt: {problem}")
    return problems


def longest_prompt(template: str, table: dict[str, Any]) -> int:
    """The length of the longest prompt a valid ``template`` can render with ``table``: each
    category's longest fragment, the longest token id and collection name."""
    import string

    longest = {
        category["name"]: max((len(o["prompt"]) for o in category["options"]), default=0)
        for category in table["categories"]
    }
    longest.update(token_id=TOKEN_ID_DIGITS, collection=NAME_MAX)
    return sum(
        len(literal) + (longest[field] if field is not None else 0)
        for literal, field, _spec, _conversion in string.Formatter().parse(template)
    )


def style_images_problems(paths: list[str]) -> list[str]:
    problems = []
    if len(paths) > STYLE_IMAGES_MAX:
        problems.append(f"at most {STYLE_IMAGES_MAX} images, got {len(paths)}")
    for i, path in enumerate(paths):
        if problem := text_problem(path, PATH_MAX):
            problems.append(f"line {i + 1}: {problem}")
    return problems
