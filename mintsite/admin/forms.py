"""The collection form of the admin: the rarity table edited as rows, reference images as lines.

The rarity table is a JSON document (``generation/traits.py``). Managers edit it as a table with
one row per option: the first row of a category names the category (and ticks *verify* when CLIP
must check it), the rows below it with an empty category cell add options to it. A JSON box
beside the rows takes a whole table pasted at once and wins over the rows when filled. The
result is validated by ``Collection.full_clean`` (``generation.traits.validate_rarity``), whose
messages name the field by its path (``categories[0].options[1].weight``); the form adds the
category and option names to each path so the manager can find the row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from generation.models import Collection
from generation.traits import MODES

AMOUNT_KEYS = {"weighted": "weight", "quota": "quota"}


@dataclass
class RarityRow:
    category: str = ""
    verify: bool = False
    option: str = ""
    prompt: str = ""
    amount: str = ""

    def is_blank(self) -> bool:
        return not (self.category or self.verify or self.option or self.prompt or self.amount)


@dataclass
class RarityInput:
    """What the rarity widget posts: a mode, the rows, and the optional pasted JSON."""

    mode: str = "none"
    rows: list[RarityRow] = field(default_factory=list)
    json: str = ""

    @classmethod
    def from_table(cls, table: Any) -> RarityInput:
        """The rows showing ``table``; a table the rows cannot show exactly (not valid enough
        to be read as rows, or with keys the rows have no cell for) goes to the JSON box."""
        try:
            mode = table["mode"]
            key = AMOUNT_KEYS.get(mode)
            rows = []
            for category in table["categories"]:
                for i, option in enumerate(category["options"]):
                    amount = option.get(key, "") if key else ""
                    rows.append(
                        RarityRow(
                            category=category["name"] if i == 0 else "",
                            verify=bool(category.get("verify")) if i == 0 else False,
                            option=option["name"],
                            prompt=option.get("prompt", ""),
                            amount=repr(amount) if isinstance(amount, float) else str(amount),
                        )
                    )
            shown = cls(mode=mode, rows=rows)
            if rows_to_table(shown) == _with_verify(table):
                return shown
        except (KeyError, TypeError, AttributeError, ValidationError):
            pass
        return cls(mode="none", json=json.dumps(table, indent=2, ensure_ascii=False))


def _with_verify(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` as the rows write it back: every category with its ``verify`` spelled out."""
    return {
        **table,
        "categories": [{**c, "verify": c.get("verify", False)} for c in table["categories"]],
    }


def _parse_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)  # ValueError for anything else


class RarityTableWidget(forms.Widget):
    """Rows of (category, verify, option, prompt, weight or quota), plus blank rows to fill."""

    template_name = "admin/generation/widgets/rarity_table.html"
    extra_rows = 3

    def format_value(self, value: Any) -> RarityInput:  # type: ignore[override]
        if isinstance(value, RarityInput):
            return value
        if isinstance(value, str):  # a JSONField's prepared value
            try:
                value = json.loads(value)
            except ValueError:
                return RarityInput(json=value)
        if value in (None, ""):
            value = {"mode": "none", "categories": []}
        return RarityInput.from_table(value)

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        data: RarityInput = context["widget"]["value"]
        rows = list(data.rows) + [RarityRow() for _ in range(self.extra_rows)]
        context["widget"].update(
            mode=data.mode,
            modes=MODES,
            rows=rows,
            row_count=len(rows),
            json=data.json,
        )
        return context

    def value_from_datadict(self, data: Any, files: Any, name: str) -> RarityInput:
        try:
            count = int(data.get(f"{name}-rows", "0"))
        except ValueError:
            count = 0
        rows = [
            RarityRow(
                category=data.get(f"{name}-{i}-category", "").strip(),
                verify=data.get(f"{name}-{i}-verify") in ("on", "true", "1"),
                option=data.get(f"{name}-{i}-option", "").strip(),
                prompt=data.get(f"{name}-{i}-prompt", ""),
                amount=data.get(f"{name}-{i}-amount", "").strip(),
            )
            for i in range(min(count, 10_000))
        ]
        return RarityInput(
            mode=data.get(f"{name}-mode", "none"), rows=rows, json=data.get(f"{name}-json", "")
        )

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return f"{name}-mode" not in data and f"{name}-json" not in data


class RarityTableField(forms.Field):
    """Builds the rarity table's JSON from the widget's rows (or its pasted JSON)."""

    widget = RarityTableWidget

    def to_python(self, value: Any) -> Any:
        if not isinstance(value, RarityInput):
            return value  # the initial table itself
        if value.json.strip():
            try:
                return json.loads(value.json)
            except ValueError as exc:
                raise ValidationError(f"the pasted JSON does not parse: {exc}") from exc
        return rows_to_table(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        return data

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            value = self.to_python(data)
        except ValidationError:
            return True
        return json.dumps(value, sort_keys=True) != json.dumps(initial, sort_keys=True)


def rows_to_table(value: RarityInput) -> dict[str, Any]:
    """The rarity table the rows describe; a row that cannot be read is refused, naming it."""
    problems: list[str] = []
    if value.mode not in MODES:
        raise ValidationError(f"mode: must be one of {', '.join(MODES)}, got {value.mode!r}")
    key = AMOUNT_KEYS.get(value.mode)
    categories: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for number, row in enumerate(value.rows, start=1):
        if row.is_blank():
            continue
        if row.category:
            current = by_name.get(row.category)
            if current is None:
                current = {"name": row.category, "verify": False, "options": []}
                by_name[row.category] = current
                categories.append(current)
        if current is None:
            problems.append(f"row {number}: name its category (the first row of each names it)")
            continue
        current["verify"] = current["verify"] or row.verify
        if not row.option and not row.prompt and not row.amount:
            continue  # a category row whose options follow
        option: dict[str, Any] = {"name": row.option, "prompt": row.prompt}
        label = f"row {number} ({current['name']} / {row.option or 'no name'})"
        if key is None:
            problems.append(
                f"{label}: mode 'none' has no options; choose weighted or quota, or clear the row"
            )
            continue
        if row.amount:
            try:
                option[key] = _parse_number(row.amount)
            except ValueError:
                problems.append(f"{label}: {key} {row.amount!r} is not a number")
                continue
        current["options"].append(option)
    if problems:
        raise ValidationError(problems)
    return {"mode": value.mode, "categories": categories}


_PATH = re.compile(r"^categories\[(\d+)\](?:\.options\[(\d+)\])?[\w.]*")


def name_paths(message: str, table: Any) -> str:
    """``message`` with the category/option names after the path it starts with."""
    match = _PATH.match(message)
    if not match:
        return message
    try:
        category = table["categories"][int(match.group(1))]
        names = f"category {category['name']!r}"
        if match.group(2) is not None:
            names += f", option {category['options'][int(match.group(2))]['name']!r}"
    except (KeyError, IndexError, TypeError):
        return message
    return f"{match.group(0)} ({names}){message[match.end() :]}"


class StyleImagesField(forms.CharField):
    """The reference images' paths, one per line (stored as a JSON list)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 80})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        return [line.strip() for line in (value or "").splitlines() if line.strip()]

    def has_changed(self, initial: Any, data: Any) -> bool:
        return (initial or []) != self.to_python(data)


class CollectionForm(forms.ModelForm):
    rarity = RarityTableField(
        required=False,
        label="Rarity table",
        help_text="One row per option. The first row of a category names it (tick verify to "
        "have CLIP check the option in each image); rows below with an empty category add "
        "options to it. Weighted mode: weights are relative (3 and 1 make 75% and 25%). Quota "
        "mode: each category's quotas add up to max supply. Clear a row to delete it; save to "
        "get more blank rows. A table pasted as JSON replaces the rows.",
    )
    style_images = StyleImagesField(
        required=False,
        label="Style images",
        help_text="Reference images of the style, one file path per line (their sha256 is "
        "frozen with the config); each render must be close enough to their mean CLIP "
        "embedding (style images threshold)",
    )

    class Meta:
        model = Collection
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "managers" in self.fields:
            self.fields["managers"].queryset = (  # type: ignore[attr-defined]
                get_user_model().objects.filter(is_staff=True).order_by("username")
            )

    def add_error(self, field: str | None, error: Any) -> None:
        # Collection.clean reports rarity problems by path; name the category and option too.
        table = self.cleaned_data.get("rarity") if hasattr(self, "cleaned_data") else None
        if field is None and hasattr(error, "error_dict") and "rarity" in error.error_dict:
            error.error_dict["rarity"] = [
                ValidationError(name_paths(message, table))
                for e in error.error_dict["rarity"]
                for message in e.messages
            ]
        super().add_error(field, error)
