"""``manage.py calibrate_gate <collection> --samples N``: propose CLIP gate thresholds.

CLIP score scales differ between backbones (and between checkpoints of one backbone): a style
similarity of 0.28 is high for one model and noise for another. So the thresholds are measured,
not guessed: this command renders N sample tokens exactly as the render stage would, scores
them with the collection's CLIP model, and proposes thresholds that let a target fraction of
them through. It changes nothing in the database; a collection whose config digest is committed
on-chain is frozen, and the proposal is then for the next collection.

Samples
=======

Sample i (0-based) has the seed ``sha256(utf8(f"{prefix}:{i}"))`` (32 bytes), is rendered as
token ``i + 1`` (``{token_id}`` in the template) at attempt 0, through
:func:`generation.pipeline.cached_render` (a second run with the same inputs renders nothing).

Traits: ``weighted`` tables draw with :func:`generation.traits.weighted_traits`, as minting does.
``quota`` tables are *replayed*: the samples are tokens 1..N in order drawing from the quota
pool (:func:`generation.traits.quota_traits`, the same draws ``token_traits`` gives), so the
trait mix is what the first N mints with these seeds would get; when N exceeds ``max_supply``
the pool is refilled every ``max_supply`` samples.

Scores (from :func:`generation.clip_gate.check_image`, thresholds set so nothing fails):

- ``style``: cosine similarity of the image to the style prompt;
- ``trait:<cat>:margin`` for each ``verify: true`` category: the assigned option's similarity
  minus the best other option's (> 0 means the assigned option ranks first);
- ``uniqueness_max``: the largest cosine similarity to the *earlier samples'* images (the gate
  compares with the earlier accepted tokens; every sample stands in for one here);
- ``style_images``, for a collection with reference style images: the cosine similarity of the
  image to their mean embedding;
- ``near_duplicate_min``: the smallest near-duplicate distance to the earlier samples' images
  (:mod:`generation.near_duplicates`), and ``copy_max``: the largest distance from a sample to
  its own copies (:data:`generation.near_duplicates.COPIES`: shifted, jittered, brightened,
  darkened, contrast changed), which the check must catch.

A blank image (pixel std below the gate's limit) fails every threshold; it is counted and
left out of the statistics.

Proposal (nearest-rank order statistics, so the stated acceptance holds exactly on the samples)
=============================================================================================

With ``target`` in (0, 1] and, per check, the m values it applies to sorted ascending
``v[0] <= ... <= v[m-1]`` and ``need = ceil(target × m)``:

- style and style images (pass: score >= threshold): ``v[m - need]``, the (1 - target)
  quantile;
- trait margin (pass: margin > 0 and margin >= threshold): ``max(0, v[m - need])``; when fewer
  than ``need`` samples rank the assigned option first at all, no margin reaches the target
  (the proposal is 0 and the output says so). The collection has one ``trait_margin`` for all
  categories: the proposal for it is the smallest per-category proposal;
- uniqueness (pass: similarity < threshold): ``v[need - 1] + 1e-6`` (capped at 1), just above
  the target quantile;
- near duplicates (pass: distance > threshold): ``v[m - need] - 1e-6``, just below the
  (1 - target) quantile of the nearest-earlier-sample distances, but never below the largest
  copy distance of any sample (plus 1e-6), so that no copy of those kinds passes; when the two
  conflict the copies win and the output says what honest acceptance that costs. The nearest
  earlier distance falls as a collection grows: N samples stand in for the first N tokens.

Per-check acceptance is the fraction of those m samples that pass; the "all checks" acceptance
is over all N samples, blanks included, with every check applied together.

``--reference-world`` calibrates the collection ``make run`` deploys (the reference world's,
generation/reference_world/collection.py) from its spec and its models in
``settings.REFERENCE_WORLD_DIR``, with no collection row needed; ``--style top-left`` the
same world with that style's LoRA adapter, CLIP, style prompt and reference images
(``styled_collection_fields``).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.models import Collection

_STEP = 1e-6  # one unit of the gate's rounding (clip_gate.SCORE_DECIMALS = 6)


def _r(value: float) -> float:
    return round(float(value), 6)


def sample_seed(prefix: str, i: int) -> bytes:
    """Sample i's seed: ``sha256(utf8(f"{prefix}:{i}"))``."""
    return hashlib.sha256(f"{prefix}:{i}".encode()).digest()


def _needed(target: float, m: int) -> int:
    # The epsilon keeps 0.9 × 10 (9.000000000000002 in binary64) from needing 10.
    return max(1, min(m, math.ceil(target * m - 1e-9)))


def propose_min_threshold(values: list[float], target: float) -> float:
    """The largest sample value t with at least ``target`` of ``values`` >= t."""
    ordered = sorted(values)
    return ordered[len(ordered) - _needed(target, len(ordered))]


def propose_max_threshold(values: list[float], target: float) -> float:
    """A value just above the target quantile: at least ``target`` of ``values`` are below it."""
    ordered = sorted(values)
    return min(1.0, _r(ordered[_needed(target, len(ordered)) - 1] + _STEP))


def _fraction(passed: int, total: int) -> float | None:
    return _r(passed / total) if total else None


def accepted_copies(scored: list[dict[str, Any]], limit: float | None) -> float | None:
    """The share of samples one of whose copies would pass a near-duplicate ``limit``."""
    if limit is None:
        return 1.0
    return _fraction(sum(s["copy_max"] > _r(limit) for s in scored), len(scored))


class Command(BaseCommand):
    help = (
        "Render sample tokens of a collection and propose gate thresholds (style, trait "
        "margins, uniqueness, near duplicates) for a target acceptance rate. Changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("collection", nargs="?", help="the collection's slug")
        parser.add_argument(
            "--reference-world",
            action="store_true",
            help="calibrate the reference world's collection (what `make run` deploys) from "
            "its spec and REFERENCE_WORLD_DIR, instead of a collection in the database",
        )
        parser.add_argument(
            "--style",
            help="with --reference-world: the world with this style's LoRA adapter and its "
            "style-reading CLIP (lora/<style>/; docs/lora.md)",
        )
        parser.add_argument(
            "--samples", type=int, required=True, help="how many sample tokens to render (>= 2)"
        )
        parser.add_argument(
            "--target-acceptance",
            type=float,
            default=0.9,
            help="fraction of samples each check should let through, in (0, 1] (default 0.9)",
        )
        parser.add_argument(
            "--seed-prefix",
            default="calib",
            help='sample i\'s seed is sha256("<prefix>:<i>") (default "calib")',
        )
        parser.add_argument(
            "--device",
            default=None,
            help="torch device (cpu, cuda, cuda:1); default: settings.RENDER_DEVICE, else auto",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    # ------------------------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str | None = options["collection"]
        samples: int = options["samples"]
        target: float = options["target_acceptance"]
        if samples < 2:
            raise CommandError(f"--samples must be at least 2, got {samples}")
        if not 0 < target <= 1:
            raise CommandError(f"--target-acceptance must be in (0, 1], got {target}")
        if options["style"] and not options["reference_world"]:
            raise CommandError("--style goes with --reference-world")
        if bool(slug) == bool(options["reference_world"]):
            raise CommandError("name a collection's slug or give --reference-world (not both)")
        if options["reference_world"]:
            from generation.reference_world.collection import (
                styled_collection_fields,
                world_collection_fields,
            )

            root = settings.REFERENCE_WORLD_DIR
            style = options["style"]
            try:
                fields = (
                    world_collection_fields(root)
                    if style is None
                    else styled_collection_fields(root, style)
                )
            except ValueError as exc:
                raise CommandError(f"--style: {exc}") from exc
            found: Collection | None = Collection(**fields)
        else:
            found = Collection.objects.filter(slug=slug).first()
        if found is None:
            known = list(Collection.objects.order_by("slug").values_list("slug", flat=True))
            raise CommandError(
                f"unknown collection {slug!r}; known collections: "
                + (", ".join(known) if known else "(none)")
            )
        device = options["device"] or getattr(settings, "RENDER_DEVICE", None)
        self._verbosity = options["verbosity"]
        started = time.monotonic()
        result = self.calibrate(found, samples, target, options["seed_prefix"], device)
        elapsed = time.monotonic() - started
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            self.stdout.write(self.table(result, elapsed))

    # ------------------------------------------------------------------------------------------

    def _traits(self, collection: Collection, seeds: list[bytes]) -> tuple[list[dict], str]:
        from generation.traits import quota_traits, weighted_traits

        table = collection.rarity or {"mode": "none", "categories": []}
        mode = table.get("mode", "none")
        try:
            if mode == "none":
                return [{} for _ in seeds], "none (the collection has no traits)"
            if mode == "weighted":
                return [weighted_traits(s, table) for s in seeds], "weighted draws from each seed"
            supply = collection.max_supply
            drawn: list[dict] = []
            for start in range(0, len(seeds), supply):
                drawn += quota_traits(seeds[start : start + supply], table)
            how = "quota replay: samples are tokens 1..N drawing from the quota pool in order"
            if len(seeds) > supply:
                how += f" (refilled every {supply} samples, the max supply)"
            return drawn, how
        except ValueError as exc:
            raise CommandError(f"collection {collection.slug!r}: rarity table: {exc}") from exc

    def calibrate(
        self, collection: Collection, n: int, target: float, prefix: str, device: str | None
    ) -> dict[str, Any]:
        import numpy as np

        from generation import near_duplicates
        from generation.clip_gate import check_image, reference_embedding
        from generation.pipeline import (
            RenderFailed,
            cached_render,
            load_models,
            render_params,
            trait_checks_for,
        )
        from generation.traits import render_prompt

        seeds = [sample_seed(prefix, i) for i in range(n)]
        all_traits, trait_source = self._traits(collection, seeds)
        verified = [c for c in collection.rarity.get("categories", []) if c.get("verify")]
        try:
            renderer, scorer = load_models(collection, device)
        except RenderFailed as exc:
            raise CommandError(str(exc)) from exc
        style_reference = None
        if collection.style_images:
            try:
                style_reference = reference_embedding(scorer, collection.style_image_paths())
            except OSError as exc:
                raise CommandError(f"the collection's style images cannot be read: {exc}") from exc

        rows: list[dict[str, Any]] = []
        embeddings: list[np.ndarray] = []
        signatures: list[np.ndarray] = []
        for i, (seed, traits) in enumerate(zip(seeds, all_traits, strict=True)):
            try:
                prompt = render_prompt(
                    collection.prompt_template,
                    traits,
                    collection.rarity,
                    token_id=i + 1,
                    collection=collection.name,
                )
            except (KeyError, IndexError, ValueError) as exc:
                raise CommandError(f"the prompt template cannot be filled: {exc!r}") from exc
            params = render_params(collection, prompt)
            image = cached_render(renderer, params, seed, 0)
            checks = trait_checks_for(collection, traits)
            earlier = np.stack(embeddings) if embeddings else None
            earlier_signatures = np.stack(signatures) if signatures else None
            try:
                gate = check_image(
                    scorer,
                    image,
                    collection.style_prompt,
                    -1.0,
                    traits=checks,
                    trait_margin=0.0,
                    earlier=earlier,
                    uniqueness_threshold=1.0 if earlier is not None else None,
                    style_reference=style_reference,
                    style_reference_threshold=-1.0 if style_reference is not None else None,
                    earlier_signatures=earlier_signatures,
                    near_duplicate_threshold=0.0 if earlier_signatures is not None else None,
                )
            except ValueError as exc:
                raise CommandError(f"collection {collection.slug!r}: {exc}") from exc
            blank = gate.embedding is None
            if not blank:
                embeddings.append(gate.embedding)
                assert gate.signature is not None  # a non-blank image has one
                signatures.append(gate.signature)
                copies = near_duplicates.copy_distances(image)
                gate.scores["copy_max"] = _r(max(copies.values()))
            rows.append(
                {
                    "index": i,
                    "seed": "0x" + seed.hex(),
                    "traits": traits,
                    "prompt": prompt,
                    "blank": blank,
                    "pixel_std": _r(gate.pixel_std or 0.0),
                    "scores": {} if blank else gate.scores,
                }
            )
            if getattr(self, "_verbosity", 1) >= 2:
                self.stderr.write(f"sample {i + 1}/{n}: {gate.scores}")

        stats, proposal, notes = self._propose(collection, rows, verified, target)
        current_all = self._joint(rows, verified, self._current(collection, verified))
        proposed_all = self._joint(rows, verified, proposal)
        frozen = bool(collection.config_digest)
        return {
            "collection": collection.slug,
            "frozen": frozen,
            "config_digest": collection.config_digest or None,
            "sample_count": n,
            "blank_samples": sum(r["blank"] for r in rows),
            "target_acceptance": target,
            "seed_prefix": prefix,
            "seed_scheme": 'sha256(utf8("<prefix>:<i>")), sample i rendered as token i+1, attempt 0',
            "trait_source": trait_source,
            "device": renderer.device,
            "model_fingerprint": renderer.fingerprint,
            "clip_fingerprint": scorer.fingerprint,
            "statistics": stats,
            "current": self._current(collection, verified),
            "proposal": proposal,
            "acceptance_all_checks": {"current": current_all, "proposed": proposed_all},
            "notes": [
                "CLIP score scales differ between backbones and checkpoints, so thresholds are "
                "calibrated on samples from this collection's own models, not copied.",
                *notes,
                (
                    f"frozen: config digest {collection.config_digest} is committed on-chain, "
                    "so this collection's thresholds cannot change; the proposal is for the "
                    "next collection."
                    if frozen
                    else "nothing was changed: apply the proposal in the admin before the "
                    "config digest is committed, or use it for the next collection."
                ),
            ],
            "samples": rows,
        }

    @staticmethod
    def _current(collection: Collection, verified: list[dict]) -> dict[str, Any]:
        return {
            "clip_threshold": collection.clip_threshold,
            "trait_margin": collection.trait_margin,
            "trait_margins": {c["name"]: collection.trait_margin for c in verified},
            "uniqueness_threshold": collection.uniqueness_threshold,
            "style_images_threshold": collection.style_images_threshold,
            "near_duplicate_threshold": collection.near_duplicate_threshold,
        }

    @staticmethod
    def _summary(values: list[float]) -> dict[str, Any]:
        return {
            "n": len(values),
            "min": _r(min(values)) if values else None,
            "median": _r(statistics.median(values)) if values else None,
            "max": _r(max(values)) if values else None,
        }

    def _propose(
        self,
        collection: Collection,
        rows: list[dict[str, Any]],
        verified: list[dict],
        target: float,
    ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        scored = [r["scores"] for r in rows if not r["blank"]]
        notes: list[str] = []
        if not scored:
            raise CommandError(
                f"all {len(rows)} samples rendered blank images; there is nothing to calibrate "
                "(check the model, steps and size)"
            )
        if len(scored) < len(rows):
            notes.append(
                f"{len(rows) - len(scored)} of {len(rows)} samples were blank images, which the "
                "gate always rejects; they are left out of the statistics."
            )
        stats: dict[str, Any] = {}

        style = [s["style"] for s in scored]
        style_proposed = propose_min_threshold(style, target)
        stats["style"] = {
            **self._summary(style),
            "current": collection.clip_threshold,
            "proposed": style_proposed,
            "acceptance_current": _fraction(
                sum(v >= _r(collection.clip_threshold) for v in style), len(style)
            ),
            "acceptance_proposed": _fraction(sum(v >= style_proposed for v in style), len(style)),
        }

        def margin_pass(value: float, threshold: float) -> bool:
            return value > 0 and value >= _r(threshold)

        margins: dict[str, float] = {}
        for category in verified:
            name = category["name"]
            values = [s[f"trait:{name}:margin"] for s in scored]
            first = sum(v > 0 for v in values)
            proposed = _r(min(2.0, max(0.0, propose_min_threshold(values, target))))
            margins[name] = proposed
            stats[f"trait:{name}:margin"] = {
                **self._summary(values),
                "ranked_first": first,
                "current": collection.trait_margin,
                "proposed": proposed,
                "acceptance_current": _fraction(
                    sum(margin_pass(v, collection.trait_margin) for v in values), len(values)
                ),
                "acceptance_proposed": _fraction(
                    sum(margin_pass(v, proposed) for v in values), len(values)
                ),
            }
            if first < _needed(target, len(values)):
                notes.append(
                    f"trait {name!r}: the assigned option ranks first in only {first} of "
                    f"{len(values)} samples, below the target {target:g}; no margin can reach "
                    "it (the proposal is 0). Make the option prompts more distinct, use a "
                    "stronger CLIP model, or do not verify this category."
                )

        similarities = [s["uniqueness_max"] for s in scored if "uniqueness_max" in s]
        uniqueness_proposed = None
        if similarities:
            uniqueness_proposed = propose_max_threshold(similarities, target)
            current = collection.uniqueness_threshold
            stats["uniqueness_max"] = {
                **self._summary(similarities),
                "current": current,
                "proposed": uniqueness_proposed,
                "acceptance_current": (
                    1.0
                    if current is None
                    else _fraction(sum(v < _r(current) for v in similarities), len(similarities))
                ),
                "acceptance_proposed": _fraction(
                    sum(v < uniqueness_proposed for v in similarities), len(similarities)
                ),
            }
        references = [s["style_images"] for s in scored if "style_images" in s]
        references_proposed = collection.style_images_threshold
        if references:
            references_proposed = propose_min_threshold(references, target)
            current = collection.style_images_threshold
            stats["style_images"] = {
                **self._summary(references),
                "current": current,
                "proposed": references_proposed,
                "acceptance_current": (
                    1.0
                    if current is None
                    else _fraction(sum(v >= _r(current) for v in references), len(references))
                ),
                "acceptance_proposed": _fraction(
                    sum(v >= references_proposed for v in references), len(references)
                ),
            }
        near_proposed = self._propose_near_duplicates(collection, scored, target, stats, notes)
        proposal = {
            "clip_threshold": style_proposed,
            "trait_margin": min(margins.values()) if margins else collection.trait_margin,
            "trait_margins": margins,
            "uniqueness_threshold": uniqueness_proposed,
            "style_images_threshold": references_proposed,
            "near_duplicate_threshold": near_proposed,
        }
        return stats, proposal, notes

    def _propose_near_duplicates(
        self,
        collection: Collection,
        scored: list[dict[str, Any]],
        target: float,
        stats: dict[str, Any],
        notes: list[str],
    ) -> float | None:
        """The near-duplicate threshold for ``target`` (see the module docstring); the
        statistics and notes are added to ``stats`` and ``notes``."""
        distances = [s["near_duplicate_min"] for s in scored if "near_duplicate_min" in s]
        if not distances:
            return collection.near_duplicate_threshold
        ordered = sorted(distances)
        honest = _r(max(0.0, ordered[len(ordered) - _needed(target, len(ordered))] - _STEP))
        copy_max = max(s["copy_max"] for s in scored)
        floor = _r(copy_max + _STEP)
        proposed = max(honest, floor)
        current = collection.near_duplicate_threshold

        def accepted(limit: float | None) -> float | None:
            if limit is None:
                return 1.0
            return _fraction(sum(v > _r(limit) for v in distances), len(distances))

        stats["near_duplicate_min"] = {
            **self._summary(distances),
            "current": current,
            "proposed": proposed,
            "acceptance_current": accepted(current),
            "acceptance_proposed": accepted(proposed),
        }
        stats["copy_max"] = {
            **self._summary([s["copy_max"] for s in scored]),
            "current": current,
            "proposed": proposed,
            "acceptance_current": accepted_copies(scored, current),
            "acceptance_proposed": accepted_copies(scored, proposed),
        }
        if floor > honest:
            notes.append(
                f"near duplicates: the target quantile of the nearest-earlier-sample distance "
                f"({honest:.6f}) would let copies through (a sample's copy reaches "
                f"{copy_max:.6f}); the proposal is raised to {floor:.6f}, which re-renders "
                f"{1 - (accepted(floor) or 0.0):.0%} of the samples. Samples this close are "
                "nearly the same image: look at them before trusting the model."
            )
        return proposed

    @staticmethod
    def _joint(rows: list[dict[str, Any]], verified: list[dict], setting: dict[str, Any]) -> float:
        """Fraction of all samples (blanks fail) that pass every check under ``setting``."""
        passed = 0
        for row in rows:
            s = row["scores"]
            if row["blank"] or s["style"] < _r(setting["clip_threshold"]):
                continue
            margin = _r(setting["trait_margin"])
            if any(
                not (
                    s[f"trait:{c['name']}:margin"] > 0 and s[f"trait:{c['name']}:margin"] >= margin
                )
                for c in verified
            ):
                continue
            limit = setting["uniqueness_threshold"]
            if limit is not None and s.get("uniqueness_max", -1.0) >= _r(limit):
                continue
            references = setting.get("style_images_threshold")
            if references is not None and s.get("style_images", 1.0) < _r(references):
                continue
            near = setting.get("near_duplicate_threshold")
            if near is not None and s.get("near_duplicate_min", 1.0) <= _r(near):
                continue
            passed += 1
        return _r(passed / len(rows))

    # ------------------------------------------------------------------------------------------

    @staticmethod
    def table(result: dict[str, Any], elapsed: float) -> str:
        def num(value: Any) -> str:
            if value is None:
                return "off"
            return f"{value:.6f}" if isinstance(value, float) else str(value)

        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.0%}"

        header = (
            "statistic",
            "n",
            "min",
            "median",
            "max",
            "current",
            "proposed",
            "acc@current",
            "acc@proposed",
        )
        lines = [header]
        for name, s in result["statistics"].items():
            label = name
            if "ranked_first" in s:
                label += f" (1st: {s['ranked_first']}/{s['n']})"
            lines.append(
                (
                    label,
                    str(s["n"]),
                    num(s["min"]),
                    num(s["median"]),
                    num(s["max"]),
                    num(s["current"]),
                    num(s["proposed"]),
                    pct(s["acceptance_current"]),
                    pct(s["acceptance_proposed"]),
                )
            )
        joint = result["acceptance_all_checks"]
        lines.append(
            (
                "all checks",
                str(result["sample_count"]),
                *([""] * 5),
                pct(joint["current"]),
                pct(joint["proposed"]),
            )
        )
        widths = [max(len(row[c]) for row in lines) for c in range(len(header))]

        def fmt(row: tuple[str, ...]) -> str:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            return "  ".join(cells).rstrip()

        out = [
            f"calibrate_gate: collection {result['collection']!r}, {result['sample_count']} "
            f"samples ({result['blank_samples']} blank), target acceptance "
            f"{result['target_acceptance']:g}, device {result['device']}, {elapsed:.1f} s",
            f"  seeds: {result['seed_scheme']}, prefix {result['seed_prefix']!r}",
            f"  traits: {result['trait_source']}",
            f"  model {result['model_fingerprint']}, CLIP {result['clip_fingerprint']}",
            "",
            fmt(lines[0]),
            fmt(tuple("-" * w for w in widths)),
            *(fmt(row) for row in lines[1:]),
            "",
            "proposal:",
        ]
        proposal = result["proposal"]
        out.append(f"  clip_threshold       = {num(proposal['clip_threshold'])}")
        out.append(f"  trait_margin         = {num(proposal['trait_margin'])}")
        for name, value in proposal["trait_margins"].items():
            out.append(f"    ({name}: {num(value)})")
        out.append(f"  uniqueness_threshold = {num(proposal['uniqueness_threshold'])}")
        if "style_images" in result["statistics"]:
            out.append(f"  style_images_threshold = {num(proposal['style_images_threshold'])}")
        out.append(f"  near_duplicate_threshold = {num(proposal['near_duplicate_threshold'])}")
        out.append("")
        out += [f"note: {note}" for note in result["notes"]]
        return "\n".join(out)
