"""The gate measured (``manage.py bench_accuracy``, what ``make bench-accuracy`` calls).

On a throwaway database, a reference-world collection (:func:`bench_spec`) gets N tokens with
seeds ``sha256("accuracy:<i>")``, and each goes through :func:`generation.pipeline.run_render`,
the function the render worker's ``render_token`` actor calls: traits from the seed, the prompt,
renders with the seed of each attempt, the CLIP gate (``check_image``) with the collection's
frozen thresholds, a re-render while it rejects, up to ``max_attempts``, then NEEDS_REVIEW. The
world's pixel oracle (generation/reference_world/oracle.py), which shares nothing with the
gate, is the judge. Every attempt's image is read back from the render cache (each render is
kept there by the inputs that made it) and gated again with the arguments the pipeline used, so
each check's verdict on each image is known; the last attempt's re-derived verdict must be the
pipeline's (a mismatch stops the run).

Then deliberately wrong images, gated as the pipeline would gate a new token of the collection
(every accepted token counts for uniqueness): renders from another token's prompt; each of the
first tokens rendered from its prompt with edition ``common`` but judged as a ``legendary`` (a
rare token drawn without its trait); off-style, blank and noise images
(devtools/adversarial_images.py); exact and near copies of accepted tokens' images.

It prints per trait category the oracle's accuracy on published tokens (gate on) and on every
token's first render (gate off, what would have been published without the gate); each check's
confusion (true/false accepts and rejects, precision and recall of acceptance) on the honest
renders and on the wrong ones; per source of image the share the gate accepts; acceptance rate,
attempts per token, the share sent to NEEDS_REVIEW; the gate's time beside the render's, side by
side on the same tokens; the targets; and, when one is missed, the figures that limit it (the
oracle on the VAE's reconstructions of world images, the gate's CLIP zero-shot on clean world
images and on generated ones). Its last line is
``gate: published trait accuracy <on> (gate off <off>), false accepts <fa>, false rejects <fr>``
where ``<on>`` and ``<off>`` are the lowest accuracy of any verified category.

A benchmark, not a test: it prints figures and does not fail on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.db import connection

from chain.deployment import CollectionSpec
from devtools import adversarial_images
from devtools.errors import BenchmarkError
from devtools.preflight import throwaway_database
from generation.models import Collection, Token

if TYPE_CHECKING:
    from PIL import Image

    from generation.clip_gate import ClipScorer, GateResult
    from generation.rendering import Renderer

Status = Token.Status

TARGET_ACCURACY = 0.99
TARGET_FALSE_ACCEPTS = 0.01
TARGET_FALSE_REJECTS = 0.10
TARGET_GATE_SHARE = 0.05
#: "Clearly worse": the model alone (gate off) at least this far below the gate in a category.
CLEARLY_WORSE = 0.05

HONEST = "honest"
WRONG = "wrong"


# --------------------------------------------------------------------------------------------
# The collection


def world_models_dir() -> Path:
    """The trained reference world's folder (clip/ and diffusion/), models/reference-world."""
    return Path(settings.BASE_DIR) / "models" / "reference-world"


def bench_spec(models: Path) -> CollectionSpec:
    """The collection the bench renders: the reference collection (``make run``'s, with its
    frozen thresholds) when ``models`` is ``REFERENCE_WORLD_DIR``, else a world collection on
    the models in ``models`` whose thresholds calibrate_gate proposes first."""
    from django.conf import settings

    from chain.deployment import reference_world_spec

    if Path(models).resolve() == Path(settings.REFERENCE_WORLD_DIR).resolve():
        # the reference collection itself: its style images and frozen, calibrated thresholds
        return reference_world_spec(slug="accuracy")
    return interim_world_spec(models)


def interim_world_spec(models: Path) -> CollectionSpec:
    """A reference-world collection built here: the world's rarity table, caption template and
    style prompt, the trained models in ``models``; its gate thresholds are left at "accept
    everything" (``clip_threshold`` -1), so the bench proposes them with calibrate_gate and
    freezes them before the tokens render (see :func:`needs_calibration`)."""
    from generation.reference_world.world import PROMPT_TEMPLATE, RARITY, STYLE_PROMPT

    return CollectionSpec(
        slug="accuracy",
        name="Reference World (accuracy bench)",
        description="Flat shapes of the reference world, rendered by its trained models.",
        model_dir=str(models / "diffusion"),
        clip_dir=str(models / "clip"),
        prompt_template=PROMPT_TEMPLATE,
        negative_prompt="",
        style_prompt=STYLE_PROMPT,
        steps=20,
        guidance=4.0,
        max_attempts=4,
        rarity=RARITY,
    )


def needs_calibration(spec: CollectionSpec) -> bool:
    """A spec whose style threshold accepts every score has no frozen thresholds yet."""
    return spec.clip_threshold <= -1.0


def collection_from_spec(spec: CollectionSpec, address: str = "0x" + "ac" * 20) -> Collection:
    """The spec as a Collection row (no contract: the bench publishes nothing on-chain); every
    spec field that is a Collection field is taken as it is."""
    names = {f.name for f in Collection._meta.concrete_fields}
    values = {k: v for k, v in dataclasses.asdict(spec).items() if k in names}
    models = Path(settings.REFERENCE_MODELS_DIR)
    values["model_dir"] = spec.model_dir or str(models / "diffusion")
    values["clip_dir"] = spec.clip_dir or str(models / "clip")
    values.update(chain_id=31337, contract_address=address)
    return Collection.objects.create(**values)


# --------------------------------------------------------------------------------------------
# The gate as the pipeline calls it


def uniqueness_kwargs(collection: Collection, token_pk: int) -> dict[str, Any]:
    """What the render stage gives ``check_image`` for uniqueness when it renders
    ``token_pk`` now (0: a token not in the database, compared with every accepted one).

    The one place the bench knows how uniqueness is configured and fed; with
    :func:`uniqueness_verdict` it is all that changes when the check does."""
    from generation.uniqueness import index_for

    kwargs: dict[str, Any] = {}
    if collection.uniqueness_threshold is not None:
        earlier = index_for(collection.pk).earlier(token_pk)
        kwargs["earlier"] = earlier if earlier.size else None
        kwargs["uniqueness_threshold"] = collection.uniqueness_threshold
    if collection.near_duplicate_threshold is not None:
        signatures = index_for(collection.pk, "image_signature").earlier(token_pk)
        kwargs["earlier_signatures"] = signatures if signatures.size else None
        kwargs["near_duplicate_threshold"] = collection.near_duplicate_threshold
    return kwargs


def uniqueness_verdict(gate: GateResult) -> bool | None:
    """Whether the uniqueness check passed (None: it did not run)."""
    verdicts = []
    if "uniqueness_max" in gate.thresholds:
        verdicts.append(gate.scores["uniqueness_max"] < gate.thresholds["uniqueness_max"])
    if "near_duplicate_min" in gate.thresholds:
        verdicts.append(gate.scores["near_duplicate_min"] > gate.thresholds["near_duplicate_min"])
    return all(verdicts) if verdicts else None


def gate_kwargs(
    collection: Collection, scorer: ClipScorer, traits: dict[str, str], token_pk: int
) -> dict[str, Any]:
    """``check_image``'s arguments as ``generation.pipeline._render_claimed`` passes them."""
    from generation.pipeline import _style_reference, trait_checks_for

    style_reference = None
    if collection.style_images:  # the pipeline's own, computed once per process
        style_reference = _style_reference(scorer, collection.style_image_paths())
    return {
        "style_prompt": collection.style_prompt,
        "style_threshold": collection.clip_threshold,
        "traits": trait_checks_for(collection, traits),
        "trait_margin": collection.trait_margin,
        "style_reference": style_reference,
        "style_reference_threshold": collection.style_images_threshold,
        **uniqueness_kwargs(collection, token_pk),
    }


def check_verdicts(gate: GateResult, verified: Sequence[str]) -> dict[str, bool]:
    """Check → passed, for each check the gate ran on the image (a blank one: only "blank")."""
    if "blank_std" in gate.scores:
        return {"blank": False}
    s, t = gate.scores, gate.thresholds
    verdicts = {"blank": True, "style": s["style"] >= t["style"]}
    for name in verified:
        margin = s[f"trait:{name}:margin"]
        verdicts[f"trait:{name}"] = margin > 0 and margin >= t[f"trait:{name}:margin"]
    if "style_images" in s:
        verdicts["style_images"] = s["style_images"] >= t["style_images"]
    unique = uniqueness_verdict(gate)
    if unique is not None:
        verdicts["uniqueness"] = unique
    return verdicts


# --------------------------------------------------------------------------------------------
# Cases: one gated image each, with what the oracle says it should have got


#: An image's kind decides what it truly is: a render (judged by the oracle), one of the
#: adversarial makers' kinds (never a world image), or a duplicate (a world image, not unique).
RENDER, OFF_STYLE, BLANK, NOISE, DUPLICATE = "render", "off-style", "blank", "noise", "duplicate"


@dataclass
class Case:
    """One gated image: where it came from, the gate's verdicts and the truth per check."""

    source: str
    group: str  # HONEST or WRONG
    verdicts: dict[str, bool]
    truth: dict[str, bool]
    passed: bool
    scores: dict[str, float] = field(default_factory=dict)
    unread: tuple[str, ...] = ()
    """The verified categories the oracle cannot tell in the image (an in-between drawing)."""

    @property
    def good(self) -> bool:
        """Every check should pass: the image is what its token should publish."""
        return all(self.truth.values())


def truth_for(
    kind: str,
    oracle_traits: dict[str, str | None],
    assigned: dict[str, str],
    verified: Sequence[str],
) -> dict[str, bool]:
    """Check → whether the image should pass it, by its kind and the oracle's reading."""
    world = kind in (RENDER, DUPLICATE) and any(v is not None for v in oracle_traits.values())
    truth = {"blank": kind != BLANK, "style": world, "style_images": world}
    for name in verified:
        truth[f"trait:{name}"] = oracle_traits.get(name) == assigned[name]
    truth["uniqueness"] = kind != DUPLICATE
    return truth


def make_case(
    source: str,
    group: str,
    kind: str,
    gate: GateResult,
    oracle_traits: dict[str, str | None],
    assigned: dict[str, str],
    verified: Sequence[str],
) -> Case:
    verdicts = check_verdicts(gate, verified)
    truth = truth_for(kind, oracle_traits, assigned, verified)
    if all(verdicts.values()) and not gate.passed:
        # a check this bench does not read yet (its reasons say which): counted as "other",
        # deserved when everything else about the image is right
        verdicts["other"] = False
        truth["other"] = all(truth.values())
    if all(verdicts.values()) != gate.passed:
        raise BenchmarkError(
            f"{source}: the checks' verdicts {verdicts} disagree with the gate's "
            f"{gate.passed} ({gate.reasons}); the bench reads the gate's scores wrongly"
        )
    unread = tuple(name for name in verified if oracle_traits.get(name) is None)
    return Case(source, group, verdicts, truth, gate.passed, dict(gate.scores), unread)


@dataclass
class Confusion:
    """Acceptance is the positive class: a true accept is a good image let through."""

    ta: int = 0
    fa: int = 0
    tr: int = 0
    fr: int = 0

    def add(self, accepted: bool, good: bool) -> None:
        if accepted:
            self.ta += good
            self.fa += not good
        else:
            self.fr += good
            self.tr += not good

    @property
    def n(self) -> int:
        return self.ta + self.fa + self.tr + self.fr

    @property
    def precision(self) -> float | None:
        """Of the accepted images, the share that are good."""
        return _ratio(self.ta, self.ta + self.fa)

    @property
    def recall(self) -> float | None:
        """Of the good images, the share accepted."""
        return _ratio(self.ta, self.ta + self.fr)

    @property
    def false_accept_rate(self) -> float | None:
        """Of the bad images, the share accepted."""
        return _ratio(self.fa, self.fa + self.tr)

    @property
    def false_reject_rate(self) -> float | None:
        """Of the good images, the share rejected."""
        return _ratio(self.fr, self.ta + self.fr)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def confusion(cases: Sequence[Case], check: str | None = None) -> Confusion:
    """The confusion of one check (over the cases it ran on), or of the whole gate (None)."""
    result = Confusion()
    for case in cases:
        if check is None:
            result.add(case.passed, case.good)
        elif check in case.verdicts:
            result.add(case.verdicts[check], case.truth[check])
    return result


def last_line(on: float, off: float, fa: float | None, fr: float | None) -> str:
    """The bench's last line (the format the issue fixes)."""
    return (
        f"gate: published trait accuracy {on:.3f} (gate off {off:.3f}), "
        f"false accepts {_num(fa)}, false rejects {_num(fr)}"
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """Everything one run measured (what :func:`report` prints)."""

    tokens: int = 0
    device: str = ""
    collection: dict[str, Any] = field(default_factory=dict)
    thresholds_from: str = ""
    verified: list[str] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: list[int] = field(default_factory=list)
    published_right: dict[str, list[bool]] = field(default_factory=dict)
    first_right: dict[str, list[bool]] = field(default_factory=dict)
    first_right_published: dict[str, list[bool]] = field(default_factory=dict)
    published_unread: dict[str, int] = field(default_factory=dict)
    published_misread: dict[str, int] = field(default_factory=dict)
    render_s: list[float] = field(default_factory=list)
    gate_side_s: list[float] = field(default_factory=list)
    gate_s: list[float] = field(default_factory=list)
    pipeline_s: float = 0.0
    pipeline_attempts: int = 0
    limits: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    tradeoff: dict[str, Any] = field(default_factory=dict)
    grid: list[tuple[Image.Image, dict[str, str], dict[str, str | None]]] = field(
        default_factory=list
    )
    elapsed_s: float = 0.0


def run_accuracy_bench(
    tokens: int = 300,
    wrong: int = 60,
    models: Path | None = None,
    device: str = "cpu",
    calibration_samples: int = 96,
    timing_tokens: int = 24,
    limit_images: int = 200,
    target_acceptance: float = 0.9,
    progress: Callable[[str], None] | None = None,
    fresh_database: bool = True,
    race_pairs: int = 20,
) -> Run:
    """The figures of one run, on a throwaway database (``fresh_database=False``: the current
    one, as in a test) and a scratch render cache. ``race_pairs``: pairs of tokens rendering
    the same image in two workers at once (:func:`_race`; their tokens must be committed for
    the other worker to see them, so a test inside a transaction passes 0)."""
    scratch = Path(tempfile.mkdtemp(prefix="mint-bench-accuracy-"))
    saved = (settings.RENDER_CACHE_DIR, settings.RENDER_BATCH_SIZE, settings.RENDER_DEVICE)
    settings.RENDER_CACHE_DIR = scratch
    settings.RENDER_BATCH_SIZE = 1  # the bench renders on this thread, one token at a time
    settings.RENDER_DEVICE = device
    try:
        database = throwaway_database() if fresh_database else nullcontext()
        with database, _one_thread_on_cpu(device):
            return _run(tokens, wrong, models or world_models_dir(), device, calibration_samples,
                        timing_tokens, limit_images, target_acceptance,
                        progress or (lambda _: None), race_pairs)  # fmt: skip
    finally:
        settings.RENDER_CACHE_DIR, settings.RENDER_BATCH_SIZE, settings.RENDER_DEVICE = saved
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _one_thread_on_cpu(device: str) -> Iterator[None]:
    from generation.torch_threads import one_torch_thread

    if not device.startswith("cpu"):
        yield
        return
    with one_torch_thread():
        yield


def token_seed(i: int) -> str:
    return "0x" + hashlib.sha256(f"accuracy:{i}".encode()).hexdigest()


def _run(
    n: int,
    wrong: int,
    models: Path,
    device: str,
    calibration_samples: int,
    timing_tokens: int,
    limit_images: int,
    target_acceptance: float,
    progress: Callable[[str], None],
    race_pairs: int = 0,
) -> Run:
    from generation.pipeline import load_models

    started = time.perf_counter()
    if not (models / "diffusion" / "model_index.json").is_file():
        raise BenchmarkError(f"no trained diffusion model at {models / 'diffusion'}: train it "
                             "with `manage.py train_reference_world --diffusion`")  # fmt: skip
    spec = bench_spec(models)
    collection = collection_from_spec(spec)
    run = Run(tokens=n, device=device)
    run.verified = [c["name"] for c in collection.rarity.get("categories", []) if c.get("verify")]
    renderer, scorer = load_models(collection, device)

    progress(f"calibrate_gate: {calibration_samples} samples")
    run.calibration = _calibrate(collection, calibration_samples, target_acceptance, device)
    if needs_calibration(spec):
        proposal = run.calibration["proposal"]
        collection.clip_threshold = proposal["clip_threshold"]
        collection.trait_margin = proposal["trait_margin"]
        collection.uniqueness_threshold = run.calibration["uniqueness_at_0.99"]
        collection.save()
        run.thresholds_from = (
            f"proposed by calibrate_gate on {calibration_samples} samples (target acceptance "
            f"{run.calibration['target_acceptance']:g} per check; uniqueness at 0.99), frozen "
            "before the tokens render"
        )
    else:
        run.thresholds_from = "the collection's own (frozen)"
    run.collection = {
        "slug": collection.slug,
        "model": str(collection.model_path()),
        "clip": str(collection.clip_path()),
        "model_fingerprint": renderer.fingerprint,
        "clip_fingerprint": scorer.fingerprint,
        "steps": collection.steps,
        "guidance": collection.guidance,
        "size": f"{collection.width}x{collection.height}",
        "max_attempts": collection.max_attempts,
        "clip_threshold": collection.clip_threshold,
        "trait_margin": collection.trait_margin,
        "uniqueness_threshold": collection.uniqueness_threshold,
        "style_images_threshold": collection.style_images_threshold if collection.style_images
        else None,
        "style_images": len(collection.style_images),
    }  # fmt: skip

    tokens = [
        Token.objects.create(
            collection=collection, token_id=i, owner="0x" + "11" * 20,
            mint_tx_hash=f"0x{i:064x}", mint_log_index=0, mint_block_number=1,
            mint_block_hash="0x" + "22" * 32, expected_seed=token_seed(i), seed=token_seed(i),
            status=Status.SEED_COMMITTED,
        )
        for i in range(1, n + 1)
    ]  # fmt: skip
    _honest(run, collection, renderer, scorer, tokens, progress)
    progress("deliberately wrong images")
    _wrong(run, collection, renderer, scorer, tokens, wrong)
    if race_pairs:
        progress(f"{race_pairs} pairs of copies rendered at the same moment by two workers")
        _race(run, collection, tokens, race_pairs)
    progress(f"render and gate side by side on {timing_tokens} tokens")
    _timing(run, collection, renderer, scorer, tokens[:timing_tokens])
    progress("what limits it: VAE reconstructions, the gate's CLIP on world images")
    _limits(run, collection, renderer, scorer, limit_images)
    run.tradeoff = _tradeoff(run, collection, renderer)
    run.elapsed_s = time.perf_counter() - started
    return run


def _calibrate(collection: Collection, samples: int, target: float, device: str) -> dict[str, Any]:
    """calibrate_gate's own sweep on this collection, and a uniqueness threshold from the same
    samples at 0.99 (its one target for every check would reject 1 in 10 honest tokens as
    duplicates)."""
    from generation.management.commands.calibrate_gate import Command as CalibrateGate
    from generation.management.commands.calibrate_gate import propose_max_threshold

    result = CalibrateGate().calibrate(collection, samples, target, "calib", device)
    similarities = [
        row["scores"]["uniqueness_max"]
        for row in result["samples"]
        if not row["blank"] and "uniqueness_max" in row["scores"]
    ]
    result["uniqueness_at_0.99"] = (
        propose_max_threshold(similarities, 0.99) if similarities else None
    )
    return result


def _prompt(collection: Collection, traits: dict[str, str], token_id: int) -> str:
    from generation.traits import render_prompt

    return render_prompt(collection.prompt_template, traits, collection.rarity,
                         token_id=token_id, collection=collection.name)  # fmt: skip


def _honest(
    run: Run,
    collection: Collection,
    renderer: Renderer,
    scorer: ClipScorer,
    tokens: list[Token],
    progress: Callable[[str], None],
) -> None:
    """Every token through ``run_render``; then each of its attempts re-gated and judged."""
    from generation.clip_gate import check_image
    from generation.pipeline import cached_render, render_params, run_render, traits_for
    from generation.reference_world.oracle import read_traits

    verified = run.verified
    for category in verified:
        run.published_right[category] = []
        run.first_right[category] = []
        run.first_right_published[category] = []
    for k, token in enumerate(tokens):
        if k % 25 == 0:
            progress(
                f"tokens {k + 1}-{min(k + 25, len(tokens))} of {len(tokens)} through run_render"
            )
        seed = token.seed_bytes
        traits = traits_for(token, seed)
        kwargs = gate_kwargs(collection, scorer, traits, token.pk)  # what run_render will use
        began = time.perf_counter()
        status = run_render(token.pk)
        run.pipeline_s += time.perf_counter() - began
        token.refresh_from_db()
        run.statuses[str(status)] = run.statuses.get(str(status), 0) + 1
        used = token.attempt + 1 if status == Status.RENDERED else collection.max_attempts
        run.attempts.append(used)
        run.pipeline_attempts += used
        params = render_params(collection, _prompt(collection, traits, token.token_id))
        for attempt in range(used):
            image = cached_render(renderer, params, seed, attempt)  # the pipeline's render
            began = time.perf_counter()
            gate = check_image(scorer, image, **kwargs)
            run.gate_s.append(time.perf_counter() - began)
            reading = read_traits(image).traits
            case = make_case(f"honest render, attempt {attempt}", HONEST, RENDER, gate,
                             reading, traits, verified)  # fmt: skip
            run.cases.append(case)
            last = attempt == used - 1
            if last and case.passed != (status == Status.RENDERED):
                raise BenchmarkError(
                    f"token {token.token_id} attempt {attempt}: re-gated "
                    f"{'passed' if case.passed else 'rejected'}, the pipeline said {status}"
                )
            if attempt == 0:
                for category in verified:
                    run.first_right[category].append(reading[category] == traits[category])
            if last and status == Status.RENDERED:
                for category in verified:
                    run.published_right[category].append(reading[category] == traits[category])
                    if reading[category] is None:
                        run.published_unread[category] = run.published_unread.get(category, 0) + 1
                    elif reading[category] != traits[category]:
                        run.published_misread[category] = run.published_misread.get(category, 0) + 1
                    run.first_right_published[category].append(run.first_right[category][-1])
                if len(run.grid) < 48:
                    run.grid.append((image, traits, reading))


RACE_SOURCE = "duplicate: the same image rendered at the same moment by another worker"


def _race(run: Run, collection: Collection, tokens: list[Token], pairs: int) -> None:
    """Copies rendered at the same moment in different workers: ``pairs`` pairs of new tokens
    of a copy of the collection (same settings and thresholds, no tokens), the two tokens of a pair sharing seed and
    traits (so the same image), each pair's two ``run_render`` calls started together on two
    threads (two workers, each with its own database connection). The seeds are those of
    honest tokens the gate accepted at their first attempt, so the image passes every other
    check: the later of the two must be refused as a near duplicate of the one accepted a
    moment before. One case per pair: accepted when both ended RENDERED at attempt 0."""
    import threading

    from django.db import connection

    from generation.pipeline import run_render

    accepted = [t for t in tokens if t.status == Status.RENDERED and t.attempt == 0][:pairs]
    if (
        not accepted
        or collection.near_duplicate_threshold is None
        or "{token_id" in collection.prompt_template  # then two token ids, two images
    ):
        return
    race = Collection.objects.get(pk=collection.pk)
    race.pk, race.slug = None, f"{collection.slug}-race"
    race.contract_address = "0x" + "ad" * 20
    race.save()
    for k, original in enumerate(accepted):
        pair = [
            Token.objects.create(
                collection=race, token_id=2 * k + j + 1, owner="0x" + "11" * 20,
                mint_tx_hash=f"0x{2 * k + j + 1:064x}", mint_log_index=0, mint_block_number=1,
                mint_block_hash="0x" + "22" * 32, expected_seed=original.seed,
                seed=original.seed, status=Status.SEED_COMMITTED,
            )
            for j in (0, 1)
        ]  # fmt: skip
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def work(
            pk: int,
            barrier: threading.Barrier = barrier,
            failures: list[BaseException] = failures,
        ) -> None:
            try:
                barrier.wait()
                run_render(pk)
            except BaseException as exc:  # reported below
                failures.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(t.pk,)) for t in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise BenchmarkError(f"race pair {k + 1}: run_render failed: {failures[0]!r}")
        ended = list(Token.objects.filter(pk__in=[t.pk for t in pair]))
        both = all(t.status == Status.RENDERED and t.attempt == 0 for t in ended)
        run.cases.append(Case(RACE_SOURCE, WRONG, {"uniqueness": both}, {"uniqueness": False},
                              both))  # fmt: skip


def _wrong(
    run: Run,
    collection: Collection,
    renderer: Renderer,
    scorer: ClipScorer,
    tokens: list[Token],
    count: int,
) -> None:
    """Deliberately wrong images, each gated as a new token of the collection would be."""
    from PIL import Image as PILImage

    from generation.clip_gate import check_image
    from generation.pipeline import cached_render, render_cache_path, render_params, traits_for
    from generation.reference_world.oracle import read_traits
    from generation.reference_world.world import RARE_CATEGORY, RARE_OPTION

    verified = run.verified
    rng = np.random.default_rng(20261205)
    all_traits = [traits_for(t, t.seed_bytes) for t in tokens]
    size = collection.width

    def judge(source: str, kind: str, image: Image.Image, assigned: dict[str, str]) -> None:
        gate = check_image(scorer, image, **gate_kwargs(collection, scorer, assigned, 0))
        reading = read_traits(image).traits
        run.cases.append(make_case(source, WRONG, kind, gate, reading, assigned, verified))

    picked = tokens[:count]
    for i, token in enumerate(picked):
        mine = all_traits[i]
        other = next(
            (all_traits[j % len(tokens)] for j in range(i + 1, i + len(tokens))
             if any(all_traits[j % len(tokens)][c] != mine[c] for c in verified)),
            None,
        )  # fmt: skip
        if other is not None:
            params = render_params(collection, _prompt(collection, other, token.token_id))
            image = cached_render(renderer, params, token.seed_bytes, 0)
            judge("render from another token's prompt", RENDER, image, mine)
        if RARE_CATEGORY in mine:
            common = {**mine, RARE_CATEGORY: "common"}
            params = render_params(collection, _prompt(collection, common, token.token_id))
            image = cached_render(renderer, params, token.seed_bytes, 0)
            judge("legendary rendered from the common prompt", RENDER, image,
                  {**mine, RARE_CATEGORY: RARE_OPTION})  # fmt: skip
    makers = [
        *((f"off-style: {name}", OFF_STYLE, maker)
          for name, maker in adversarial_images.OFF_STYLE.items()),
        *((f"blank: {name}", BLANK, maker) for name, maker in adversarial_images.BLANK.items()),
        *((f"noise: {name}", NOISE, maker) for name, maker in adversarial_images.NOISE.items()),
    ]  # fmt: skip
    for source, kind, maker in makers:
        for i in range(max(count // 3, 4)):
            judge(source, kind, maker(size, rng), all_traits[i % len(all_traits)])
    published = list(
        Token.objects.filter(collection=collection, status=Status.RENDERED).order_by("token_id")
    )
    for name, copy in adversarial_images.DUPLICATES.items():
        for token in published[: max(count // 2, 4)]:
            with PILImage.open(render_cache_path(token, token.attempt)) as original:
                image = copy(original.convert("RGB"), rng)
            judge(f"duplicate: {name}", DUPLICATE, image, token.traits)


def _timing(
    run: Run, collection: Collection, renderer: Renderer, scorer: ClipScorer, tokens: list[Token]
) -> None:
    """Render (uncached) and gate, one after the other on the same tokens."""
    from generation.clip_gate import check_image
    from generation.pipeline import render_params, traits_for

    for token in tokens:
        traits = traits_for(token, token.seed_bytes)
        params = render_params(collection, _prompt(collection, traits, token.token_id))
        began = time.perf_counter()
        image = renderer.render(params, token.seed_bytes, 0)
        run.render_s.append(time.perf_counter() - began)
        kwargs = gate_kwargs(collection, scorer, traits, 0)
        began = time.perf_counter()
        check_image(scorer, image, **kwargs)
        run.gate_side_s.append(time.perf_counter() - began)


def _limits(
    run: Run, collection: Collection, renderer: Renderer, scorer: ClipScorer, images: int
) -> None:
    """The figures behind a missed target: the oracle on the VAE's reconstructions (no sampler
    on this VAE draws better), the gate's CLIP zero-shot on clean world images and on the
    first renders (where the oracle reads the category), the oracle on clean images."""
    from generation.reference_world.clip_training import HELD_OUT_SEED, evaluate_clip
    from generation.reference_world.diffusion_training import (
        oracle_accuracy,
        vae_reconstruction_accuracy,
    )
    from generation.reference_world.world import dataset

    run.limits["vae_reconstructions"] = vae_reconstruction_accuracy(renderer.pipe.vae, images)
    items = list(dataset(images, HELD_OUT_SEED))
    run.limits["oracle_on_world"] = oracle_accuracy((i.image for i in items),
                                                    (i.traits for i in items))  # fmt: skip
    run.limits["clip_on_world"] = evaluate_clip(collection.clip_path(), count=images)["zero_shot"]
    run.limits["clip_on_renders"] = _clip_on_renders(run, collection, renderer, scorer)


def _clip_on_renders(
    run: Run, collection: Collection, renderer: Renderer, scorer: ClipScorer
) -> dict[str, float | None]:
    """Per category, the share of first renders whose best-scoring option (CLIP zero-shot) is
    the one the oracle reads, over the renders where the oracle reads one."""
    from generation.pipeline import cached_render, render_params, traits_for
    from generation.reference_world.oracle import read_traits

    options = {
        c["name"]: {o["name"]: o["prompt"] for o in c["options"]}
        for c in collection.rarity.get("categories", [])
    }
    right = dict.fromkeys(run.verified, 0)
    read = dict.fromkeys(run.verified, 0)
    for token in Token.objects.filter(collection=collection).order_by("token_id"):
        traits = traits_for(token, token.seed_bytes)
        params = render_params(collection, _prompt(collection, traits, token.token_id))
        image = cached_render(renderer, params, token.seed_bytes, 0)
        reading = read_traits(image).traits
        embedding = scorer.image_embedding(image)
        for name in run.verified:
            if reading[name] is None:
                continue
            names = list(options[name])
            best = names[
                int(np.argmax(scorer.text_embeddings(list(options[name].values())) @ embedding))
            ]
            read[name] += 1
            right[name] += best == reading[name]
    return {name: _ratio(right[name], read[name]) for name in run.verified}


def _tradeoff(run: Run, collection: Collection, renderer: Renderer) -> dict[str, Any]:
    """calibrate_gate's samples with the oracle's verdicts: per check, the score each sample
    got and whether it deserved to pass (for the trade-off curve)."""
    from generation.pipeline import cached_render, render_params
    from generation.reference_world.oracle import read_traits

    curves: dict[str, Any] = {"style": {"good": [], "bad": []}}
    for name in run.verified:
        curves[f"trait:{name}:margin"] = {"good": [], "bad": []}
    for row in run.calibration["samples"]:
        if row["blank"]:
            continue
        params = render_params(collection, row["prompt"])
        image = cached_render(renderer, params, bytes.fromhex(row["seed"][2:]), 0)
        reading = read_traits(image).traits
        world = any(v is not None for v in reading.values())
        for check in ("style", "style_images"):
            if check in row["scores"]:
                curve = curves.setdefault(check, {"good": [], "bad": []})
                curve["good" if world else "bad"].append(row["scores"][check])
        for name in run.verified:
            ok = reading[name] == row["traits"][name]
            curves[f"trait:{name}:margin"]["good" if ok else "bad"].append(
                row["scores"][f"trait:{name}:margin"]
            )
    return curves


# --------------------------------------------------------------------------------------------
# The report


def _mean(values: Sequence[bool] | Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def headline(run: Run) -> dict[str, Any]:
    """The figures the last line and the targets are made of."""
    on = {c: _mean(run.published_right[c]) for c in run.verified}
    off = {c: _mean(run.first_right[c]) for c in run.verified}
    whole = confusion(run.cases)
    render = _mean(run.render_s)
    gate = _mean(run.gate_side_s)
    return {
        "on": on,
        "off": off,
        "worst_on": min((v for v in on.values() if v is not None), default=0.0),
        "worst_off": min((v for v in off.values() if v is not None), default=0.0),
        "false_accepts": whole.false_accept_rate,
        "false_rejects": whole.false_reject_rate,
        "gate_share": gate / render if gate is not None and render else None,
        "confusion": whole,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]


def report(run: Run) -> list[str]:
    """The run as markdown lines; the last is the line the issue fixes."""
    h = headline(run)
    c = run.collection
    lines = [
        f"Collection `{c['slug']}`: model `{c['model']}` ({c['model_fingerprint'][:19]}…), "
        f"CLIP `{c['clip']}` ({c['clip_fingerprint'][:19]}…); {c['steps']} steps, guidance "
        f"{c['guidance']:g}, {c['size']}, max_attempts {c['max_attempts']}, "
        f"{c.get('style_images', 0)} style reference images; device "
        f"{run.device}; {run.tokens} tokens; {run.elapsed_s:.0f} s in all.",
        "",
        f"Thresholds ({run.thresholds_from}): style `clip_threshold` {c['clip_threshold']}, "
        f"`trait_margin` {c['trait_margin']}, `uniqueness_threshold` "
        f"{c['uniqueness_threshold']}"
        + (
            f", `style_images_threshold` {c['style_images_threshold']}"
            if c["style_images_threshold"] is not None
            else ""
        )
        + ".",
        "",
        "**Trait accuracy** (the oracle reads the image; unknown counts as wrong; published = "
        "accepted by the gate, RENDERED: the pin and publish stages after it change no pixel):",
        "",
    ]
    published = len(next(iter(run.published_right.values()), []))
    all_on = [all(t) for t in zip(*run.published_right.values(), strict=True)]
    all_off = [all(t) for t in zip(*run.first_right.values(), strict=True)]
    all_off_pub = [all(t) for t in zip(*run.first_right_published.values(), strict=True)]
    rows = [
        [
            name,
            _pct(h["on"][name]),
            _pct(h["off"][name]),
            _pct(_mean(run.first_right_published[name])),
            "yes" if (h["on"][name] or 0) >= TARGET_ACCURACY else "**no**",
        ]
        for name in run.verified
    ]
    rows.append(["every verified trait", _pct(_mean(all_on)), _pct(_mean(all_off)),
                 _pct(_mean(all_off_pub)), ""])  # fmt: skip
    lines += _table(
        [
            "category",
            f"published, gate on ({published})",
            f"first render, gate off (all {run.tokens})",
            f"first render of the {published} published",
            f">= {TARGET_ACCURACY}",
        ],
        rows,
    )
    needs_review = run.statuses.get(str(Status.NEEDS_REVIEW), 0)
    attempts = sum(run.attempts)
    honest = [case for case in run.cases if case.group == HONEST]
    lines += [
        "",
        "**The pipeline** (`run_render`, as the render worker calls it):",
        "",
        *_table(
            ["measure", "value"],
            [
                [
                    "tokens published (RENDERED) / sent to NEEDS_REVIEW / other",
                    f"{published} / {needs_review} / {run.tokens - published - needs_review}",
                ],
                ["acceptance rate (tokens published)", _pct(published / max(run.tokens, 1))],
                ["share sent to NEEDS_REVIEW", _pct(needs_review / max(run.tokens, 1))],
                ["mean attempts per token", f"{attempts / max(run.tokens, 1):.2f}"],
                ["attempts the gate passed", _pct(_mean([k.passed for k in honest]))],
                [
                    "attempts the oracle reads right in every verified trait",
                    _pct(_mean([all(k.truth[f"trait:{n}"] for n in run.verified) for k in honest])),
                ],
            ],
        ),
        "",
        "**The gate's confusion per check** (accept = positive: a true accept is an image that "
        "deserved the check; precision = good share of the accepted, recall = accepted share of "
        "the good). Honest = every attempt of every token; wrong = the deliberately wrong "
        "images below:",
        "",
    ]
    checks = ["blank", "style", "style_images", *(f"trait:{n}" for n in run.verified),
              "uniqueness", "other"]  # fmt: skip
    rows = []
    for check in [*checks, None]:
        for group in (HONEST, WRONG):
            k = confusion([case for case in run.cases if case.group == group], check)
            if not k.n:
                continue
            rows.append([
                check or "**all checks (the gate)**", group, str(k.n), str(k.ta), str(k.fa),
                str(k.tr), str(k.fr), _pct(k.precision), _pct(k.recall),
            ])  # fmt: skip
    lines += _table(
        ["check", "images", "n", "true acc.", "false acc.", "true rej.", "false rej.",
         "precision", "recall"], rows, "ll" + "r" * 7,
    )  # fmt: skip
    sources: dict[str, list[Case]] = {}
    for case in run.cases:
        sources.setdefault(case.source, []).append(case)
    rows = []
    for source, cases in sources.items():
        k = confusion(cases)
        rows.append([source, str(k.n), str(k.ta + k.fr), str(k.ta + k.fa),
                     _pct(k.false_accept_rate), _pct(k.false_reject_rate)])  # fmt: skip
    lines += [
        "",
        "**By source** (good = the oracle reads every verified trait as assigned, a world "
        "image, not a copy):",
        "",
        *_table(
            [
                "images",
                "n",
                "good",
                "accepted",
                "false accepts (of bad)",
                "false rejects (of good)",
            ],
            rows,
        ),
    ]
    render, gate = _mean(run.render_s), _mean(run.gate_side_s)
    regate = _mean(run.gate_s)
    per_token = run.pipeline_s / max(run.tokens, 1)
    lines += [
        "",
        f"**Time**, side by side on {len(run.render_s)} tokens (render uncached, then the gate "
        "on its image, one after the other):",
        "",
        *_table(
            ["measure", "value"],
            [
                ["render, per image", f"{1000 * (render or 0):.1f} ms"],
                [
                    "gate (`check_image`), per image",
                    f"{1000 * (gate or 0):.2f} ms "
                    f"({1000 * (regate or 0):.2f} ms over all {len(run.gate_s)} re-gated attempts)",
                ],
                ["**gate / render**", f"**{_pct(h['gate_share'])}**"],
                [
                    "`run_render` per token (its attempts, gate, database writes)",
                    f"{1000 * per_token:.1f} ms ({run.pipeline_attempts / max(run.tokens, 1):.2f} "
                    "attempts)",
                ],
            ],
        ),
    ]
    lines += ["", "**Targets:**", ""]
    targets = _targets(run, h)
    lines += _table(["target", "figure", "met"],
                    [[t, f, "yes" if ok else "**no**"] for t, f, ok in targets])  # fmt: skip
    lines += ["", "**What limits it** (per category; the oracle judges):", ""]
    lim = run.limits
    rows = []
    for name in run.verified:
        rows.append([
            name,
            _pct(lim.get("oracle_on_world", {}).get(name)),
            _pct(lim.get("vae_reconstructions", {}).get(name)),
            _pct(h["off"][name]),
            _pct(lim.get("clip_on_world", {}).get(name)),
            _pct(lim.get("clip_on_renders", {}).get(name)),
            _pct(h["on"][name]),
            f"{run.published_unread.get(name, 0)} / {run.published_misread.get(name, 0)}",
        ])  # fmt: skip
    lines += _table(
        ["category", "oracle on clean world images", "oracle on VAE reconstructions",
         "oracle on first renders", "gate CLIP zero-shot, clean world images",
         "gate CLIP zero-shot, first renders (oracle's reading as truth)", "published",
         "published wrong: oracle cannot tell / reads another option"],
        rows,
    )  # fmt: skip
    lines += ["", *_limit_notes(run, h, targets)]
    lines += ["", last_line(h["worst_on"], h["worst_off"], h["false_accepts"],
                            h["false_rejects"])]  # fmt: skip
    return lines


def _targets(run: Run, h: dict[str, Any]) -> list[tuple[str, str, bool]]:
    worse = [n for n in run.verified if (h["off"][n] or 0) <= (h["on"][n] or 0) - CLEARLY_WORSE]
    fa, fr, share = h["false_accepts"], h["false_rejects"], h["gate_share"]
    return [
        (f"published trait accuracy >= {TARGET_ACCURACY} in every verified category",
         f"lowest {h['worst_on']:.3f}", h["worst_on"] >= TARGET_ACCURACY),
        (f"the model alone clearly worse (by >= {CLEARLY_WORSE}) in at least one",
         ", ".join(f"{n} {h['off'][n]:.3f} vs {h['on'][n]:.3f}" for n in worse) or "none",
         bool(worse)),
        (f"false accepts (wrong-trait, off-style, blank, noise, duplicate) <= "
         f"{TARGET_FALSE_ACCEPTS}", _pct(fa), fa is not None and fa <= TARGET_FALSE_ACCEPTS),
        (f"false rejects <= {TARGET_FALSE_REJECTS}",
         _pct(fr) if fr is not None else "- (no image deserved to pass)",
         fr is not None and fr <= TARGET_FALSE_REJECTS),
        (f"gate time <= {TARGET_GATE_SHARE} of render time", _pct(share),
         share is not None and share <= TARGET_GATE_SHARE),
    ]  # fmt: skip


def _limit_notes(run: Run, h: dict[str, Any], targets: list[tuple[str, str, bool]]) -> list[str]:
    """One sentence per missed target, with the figures that limit it."""
    notes = []
    lim = run.limits
    for name in run.verified:
        on = h["on"][name]
        if on is None or on >= TARGET_ACCURACY:
            continue
        cause = []
        clip_renders = lim.get("clip_on_renders", {}).get(name)
        clip_world = lim.get("clip_on_world", {}).get(name)
        vae = lim.get("vae_reconstructions", {}).get(name)
        if clip_renders is not None and clip_renders < TARGET_ACCURACY:
            cause.append(f"the gate's CLIP tells {name} right on {clip_renders:.3f} of first "
                         f"renders against {_pct(clip_world)} of clean world images")  # fmt: skip
        if vae is not None and vae < TARGET_ACCURACY:
            cause.append(f"the VAE's reconstructions keep {name} in {vae:.3f} (the diffusion "
                         f"model's ceiling; its first renders {_pct(h['off'][name])})")  # fmt: skip
        unread, misread = run.published_unread.get(name, 0), run.published_misread.get(name, 0)
        in_between = [
            case for case in run.cases
            if case.group == HONEST and name in case.unread and len(case.unread) == 1
        ]  # fmt: skip
        if in_between:
            refused = sum(not case.passed for case in in_between)
            cause.append(
                f"the gate refused {refused} of the {len(in_between)} honest renders whose "
                f"{name} alone the oracle cannot tell"
            )
        if unread:
            cause.append(
                f"of the {unread + misread} published tokens counted wrong the oracle cannot "
                f"tell the {name} of {unread} (an in-between drawing the gate's CLIP accepts) "
                f"and reads another option in {misread}"
            )
        oracle = lim.get("oracle_on_world", {}).get(name)
        if oracle is not None and oracle < 1.0:
            cause.append(f"the oracle itself reads clean world images right in {oracle:.3f}")
        notes.append(f"- {name}: published {on:.3f} < {TARGET_ACCURACY}: "
                     + ("; ".join(cause) or "the gate's margin lets wrong renders through") + ".")  # fmt: skip
    if not targets[1][2]:
        notes.append("- the model alone is not clearly worse than the gate in any category: "
                     "the gate shows no gain here.")  # fmt: skip
    if not targets[2][2]:
        by_source: dict[str, int] = {}
        for case in run.cases:
            if not case.good and case.passed:
                by_source[case.source] = by_source.get(case.source, 0) + 1
        worst = sorted(by_source.items(), key=lambda item: -item[1])[:4]
        notes.append("- false accepts come from: "
                     + ", ".join(f"{source} ({count})" for source, count in worst) + ".")  # fmt: skip
    if not targets[3][2] and h["false_rejects"] is not None:
        blame: dict[str, int] = {}
        for case in run.cases:
            if case.good and not case.passed:
                for check, ok in case.verdicts.items():
                    if not ok:
                        blame[check] = blame.get(check, 0) + 1
        notes.append("- false rejects, by the check that rejected (an image may fail several): "
                     + ", ".join(f"{check} {count}" for check, count in
                                 sorted(blame.items(), key=lambda item: -item[1])) + ".")  # fmt: skip
        if run.calibration.get("target_acceptance") and run.thresholds_from.startswith("proposed"):
            notes.append(
                f"- the thresholds were proposed at calibrate_gate's target acceptance "
                f"{run.calibration['target_acceptance']:g} per check: each check rejects about "
                f"{1 - run.calibration['target_acceptance']:.0%} of the calibration samples by "
                "construction, deserving or not (the trade-off plot shows the cost per check)."
            )
    if not targets[4][2]:
        notes.append(f"- the gate takes {1000 * (_mean(run.gate_side_s) or 0):.2f} ms per image "
                     f"against {1000 * (_mean(run.render_s) or 0):.1f} ms per render.")  # fmt: skip
    if not notes:
        notes.append("Every target is met.")
    blank = confusion([case for case in run.cases if case.group == WRONG], "blank")
    if blank.fa:
        notes.append(
            f"- observed: the gate's blank check let {blank.fa} of {blank.fa + blank.tr} blank "
            "images through (it measures the spread of all channel values together, so a flat "
            "colour is not blank to it); the later checks are what refused them."
        )
    return notes


# --------------------------------------------------------------------------------------------
# docs/accuracy.md and its pictures


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores ({platform.system()} {platform.machine()})"


def write_report(path: Path, run: Run, lines: list[str], command: str) -> list[Path]:
    """``path`` (docs/accuracy.md), its grid of published tokens and the trade-off plot."""
    from datetime import date

    path.parent.mkdir(parents=True, exist_ok=True)
    grid = path.with_name(path.stem + "-grid.png")
    curve = path.with_name(path.stem + "-tradeoff.png")
    draw_grid(run, grid)
    draw_tradeoff(run, curve)
    text = [
        "# The gate measured",
        "",
        "`make bench-accuracy` (`manage.py bench_accuracy`, devtools/accuracy_bench.py) renders "
        "tokens of a reference-world collection (docs/reference-world.md) through the render "
        "stage the worker runs (`generation.pipeline.run_render`: render, CLIP gate with the "
        "collection's thresholds, re-render while it rejects, NEEDS_REVIEW when the attempts "
        "run out), then gates deliberately wrong images as a new token's, and judges every "
        "image with the world's pixel oracle (generation/reference_world/oracle.py), which "
        "shares nothing with the gate. The bench's docstring says exactly what each figure is.",
        "",
        f"- Date: {date.today().isoformat()}; machine: {machine()}, torch on "
        f"{run.device} with one thread, {connection.vendor}",
        f"- Command: `{command}`",
        "",
        *lines,
        "",
        "## Published tokens",
        "",
        "The first published tokens with their traits (gate on). Under each: its assigned "
        "traits; a category the oracle reads otherwise is marked in red with the reading.",
        "",
        f"![published tokens]({grid.name})",
        "",
        "## The threshold trade-off (calibrate_gate's samples)",
        "",
        "calibrate_gate's samples (its sweep, `--seed-prefix calib`, attempt 0), each judged "
        "by the oracle: per check, the share of the samples that deserve to pass (solid) and "
        "of those that do not (dashed) that a threshold lets through, against the threshold; "
        "the vertical line is the collection's. The style panel adds the off-style and noise "
        "images of the run as undeserving.",
        "",
        f"![threshold trade-off]({curve.name})",
        "",
        "## Not measured here",
        "",
        "- A GPU: every figure is this CPU's.",
    ]
    path.write_text("\n".join(text) + "\n")
    return [path, grid, curve]


def draw_grid(run: Run, path: Path, columns: int = 8) -> None:
    """Published tokens at twice their size, each with its traits under it."""
    from PIL import Image, ImageDraw, ImageFont

    cells = run.grid
    if not cells:
        Image.new("RGB", (200, 40), "white").save(path)
        return
    columns = min(columns, len(cells))
    scale, text_h = 2, 44
    side = cells[0][0].width * scale
    cell_w, cell_h = side + 8, side + text_h
    rows = (len(cells) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=10)
    for i, (image, traits, reading) in enumerate(cells):
        x, y = (i % columns) * cell_w + 4, (i // columns) * cell_h + 2
        sheet.paste(image.resize((side, side), Image.Resampling.NEAREST), (x, y))
        words = [
            (traits.get("size", ""), "size"), (traits.get("colour", ""), "colour"),
            (traits.get("shape", ""), "shape"), (traits.get("background", ""), "background"),
            (traits.get("edition", ""), "edition"),
        ]  # fmt: skip
        line_y = y + side + 2
        for chunk in (words[:2], words[2:4], words[4:]):
            cursor = x
            for word, category in chunk:
                wrong = reading.get(category) != traits.get(category)
                label = f"{word}" + (f"({reading.get(category) or '?'})" if wrong else "")
                draw.text((cursor, line_y), label, fill="red" if wrong else "black", font=font)
                cursor += int(draw.textlength(label + " ", font=font))
            line_y += 13
    sheet.save(path)


def draw_tradeoff(run: Run, path: Path) -> None:
    """Per check, acceptance of deserving and undeserving samples against the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {k: {"good": list(v["good"]), "bad": list(v["bad"])} for k, v in run.tradeoff.items()}
    for check in ("style", "style_images"):
        if check in curves:
            curves[check]["bad"] += [
                case.scores[check]
                for case in run.cases
                if case.source.startswith(("off-style", "noise")) and check in case.scores
            ]
    names = list(curves)
    columns = 3
    rows = (len(names) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = curves[name]["good"] + curves[name]["bad"]
        if not values:
            continue
        margin = name.startswith("trait:")
        low = 0.0 if margin else min(values)
        xs = np.linspace(low, max(values) + 1e-6, 200)
        for kind, style, colour in (("good", "-", "tab:blue"), ("bad", "--", "tab:orange")):
            v = np.asarray(curves[name][kind])
            if not v.size:
                continue
            if margin:
                ys = [np.mean((v > 0) & (v >= x)) for x in xs]
            else:
                ys = [np.mean(v >= x) for x in xs]
            label = ("deserving" if kind == "good" else "undeserving") + f" ({v.size})"
            ax.plot(xs, ys, style, color=colour, label=label)
        frozen = {"style": run.collection["clip_threshold"],
                  "style_images": run.collection["style_images_threshold"]}.get(
            name, run.collection["trait_margin"])  # fmt: skip
        if frozen is not None:
            ax.axvline(frozen, color="grey", linewidth=1)
        ax.set_title(name.removesuffix(":margin"), fontsize=9)
        ax.set_xlabel("margin threshold" if margin else "threshold", fontsize=8)
        ax.set_ylabel("share let through", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
