"""Collections and the generation state of each token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from generation import config_limits, model_roots
from generation.config_limits import printable_line, printable_text


def _validate_prompt_template(value: str) -> None:
    """Well-formed only; which placeholders are allowed depends on the rarity table (clean())."""
    from generation.traits import template_placeholders

    try:
        template_placeholders(value)
    except ValueError as exc:
        raise ValidationError(f"malformed prompt template: {exc}") from exc


# diffusers scheduler classes a collection may choose (value: the class name the provenance
# records). LMSDiscreteScheduler is left out: it needs scipy, which the workers do not install.
SCHEDULER_CHOICES = [
    ("", "the model's own"),
    ("DDIMScheduler", "DDIM"),
    ("PNDMScheduler", "PNDM"),
    ("EulerDiscreteScheduler", "Euler"),
    ("EulerAncestralDiscreteScheduler", "Euler ancestral"),
    ("DPMSolverMultistepScheduler", "DPM-Solver++ (2M)"),
    ("UniPCMultistepScheduler", "UniPC"),
    ("HeunDiscreteScheduler", "Heun"),
    ("DDPMScheduler", "DDPM"),
    # a distilled student's sampler (manage.py distill); a student folder names it itself
    ("LCMScheduler", "LCM (a distilled student's)"),
]


def _no_traits() -> dict:
    return {"mode": "none", "categories": []}


# Everything that shapes a token's image or its acceptance: frozen once the config digest is
# committed on-chain (see generation/collection_config.py).
FROZEN_FIELDS = (
    "model_dir", "model_config_dir", "scheduler", "clip_dir", "prompt_template", "negative_prompt", "style_prompt",
    "clip_threshold", "steps", "guidance", "width", "height", "max_attempts", "rarity",
    "trait_margin", "uniqueness_threshold", "max_supply", "style_images",
    "style_images_threshold", "near_duplicate_threshold", "lora_adapters", "quantization",
    "onnx_dir", "seed_delay", "publish_weights", "vrf_coordinator", "vrf_subscription_id",
    "vrf_key_hash", "cid_profile",
)  # fmt: skip

# How the collection's content is named on IPFS (ipfs/profiles.py); the keys are
# ipfs.profiles.PROFILES' names. Collections made before profiles existed keep "legacy"
# (migration 0018): their published CIDs were made that way.
CID_PROFILE_CHOICES = [
    ("unixfs-v1-2025", "unixfs-v1-2025 (IPIP-499: 1 MiB chunks, 1024 links per node)"),
    ("legacy", "legacy (Kubo's classic defaults: 256 KiB chunks, 174 links per node)"),
]


class Collection(models.Model):
    """One ERC-721 contract on one chain, and how its tokens are generated."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=config_limits.NAME_MAX, validators=[printable_line])
    description = models.TextField(
        blank=True,
        max_length=config_limits.DESCRIPTION_MAX,
        validators=[MaxLengthValidator(config_limits.DESCRIPTION_MAX), printable_text],
    )
    chain_id = models.PositiveBigIntegerField()
    contract_address = models.CharField(max_length=42, help_text="Checksummed 0x address")
    deployment_block = models.PositiveBigIntegerField(default=0)

    model_dir = models.CharField(
        "model",
        max_length=config_limits.PATH_MAX,
        validators=[printable_line],
        help_text="A local diffusers folder (StableDiffusionPipeline) or a single-file "
        "checkpoint (.safetensors, original Stable Diffusion layout), inside the model folders "
        "the operator allows (a relative path is taken from the first); identified in the "
        "provenance by the sha256 of its weights",
    )
    model_config_dir = models.CharField(
        max_length=config_limits.PATH_MAX,
        blank=True,
        validators=[printable_line],
        help_text="For a single-file checkpoint: a local diffusers folder with the pipeline's "
        "component configs and tokenizer (weights not needed); empty for a diffusers folder",
    )
    scheduler = models.CharField(
        max_length=64,
        blank=True,
        choices=SCHEDULER_CHOICES,
        help_text="Noise scheduler; empty: the one the model ships in its scheduler config",
    )
    clip_dir = models.CharField(
        max_length=config_limits.PATH_MAX,
        validators=[printable_line],
        help_text="Local open_clip model folder, inside the model folders the operator allows",
    )
    prompt_template = models.TextField(
        max_length=config_limits.PROMPT_TEMPLATE_MAX,
        validators=[
            _validate_prompt_template,
            MaxLengthValidator(config_limits.PROMPT_TEMPLATE_MAX),
            printable_text,
        ],
        help_text="Plain {placeholders} only: a category's name, {token_id}, {collection}",
    )
    negative_prompt = models.TextField(
        blank=True,
        max_length=config_limits.NEGATIVE_PROMPT_MAX,
        validators=[MaxLengthValidator(config_limits.NEGATIVE_PROMPT_MAX), printable_text],
    )
    style_prompt = models.TextField(
        max_length=config_limits.STYLE_PROMPT_MAX,
        validators=[MaxLengthValidator(config_limits.STYLE_PROMPT_MAX), printable_text],
        help_text="What CLIP compares each image with",
    )
    clip_threshold = models.FloatField(
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="Minimum cosine similarity between image and style prompt",
    )
    steps = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)])
    guidance = models.FloatField(default=7.5, validators=[MinValueValidator(0.0)])
    width = models.PositiveIntegerField(default=64, validators=[MinValueValidator(8)])
    height = models.PositiveIntegerField(default=64, validators=[MinValueValidator(8)])
    max_attempts = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    max_supply = models.PositiveIntegerField(default=1000, validators=[MinValueValidator(1)])
    rarity = models.JSONField(
        default=_no_traits,
        blank=True,
        help_text='Trait categories: {"mode": "weighted"|"quota"|"none", "categories": [...]} '
        "(see generation/traits.py)",
    )
    trait_margin = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="How far a verified trait's option must lead the others in CLIP's ranking",
    )
    style_images = models.JSONField(
        default=list,
        blank=True,
        help_text="Paths of reference images of the style (their sha256 is frozen with the "
        "config); each render must be close enough to their mean CLIP embedding",
    )
    style_images_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="Minimum cosine similarity to the reference images; empty: no image check",
    )
    uniqueness_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="CLIP-embedding uniqueness: an image this similar (cosine) to an earlier "
        "token's is rejected; empty: off. A CLIP that reads traits cannot tell a copy from an "
        "honest token with the same traits: use the near-duplicate threshold instead",
    )
    near_duplicate_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Near-duplicate uniqueness: an image whose pixel distance to an earlier "
        "token's is at or below this (0-1; generation/near_duplicates.py) is rejected and "
        "re-rendered; measured default 0.03; empty: off",
    )

    # The latency levers (generation/render_levers.py, docs/latency.md); a distilled student is
    # named as model_dir like any model.
    lora_adapters = models.JSONField(
        default=list,
        blank=True,
        help_text='LoRA adapters on the model: a list of {"path": "…safetensors", "scale": 1.0} '
        "(paths under MODEL_ROOTS; manage.py train_lora); each file's sha256 is frozen with "
        "the config",
    )
    quantization = models.CharField(
        max_length=8,
        blank=True,
        choices=[("", "none (float weights)"), ("int8", "int8 weights (CPU workers only)")],
        help_text="int8: torchao int8 weight-only UNet and text encoder, on CPU render workers",
    )
    onnx_dir = models.CharField(
        max_length=500,
        blank=True,
        help_text="A folder of the model's ONNX export (manage.py export_onnx): render with "
        "onnxruntime instead of torch; its files' fingerprint is frozen with the config",
    )

    seed_delay = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(255)],
        help_text="Seeds come from the hash of the block this many blocks after each mint's "
        "block (future-block: a block builder cannot aim a seed at a mint it does not also "
        "produce); 0: the mint block's own hash. Fixed in the contract at deployment",
    )
    # Chainlink VRF v2.5 seeds (chain/vrf.py): set, the contract requests a random word per
    # seed commit and seeds from it instead of a block hash. Fixed in the contract at deployment.
    vrf_coordinator = models.CharField(
        max_length=42,
        blank=True,
        help_text="Chainlink VRF v2.5 coordinator the contract takes its seeds from (no block "
        "builder can steer them); empty: block-hash seeds",
    )
    vrf_subscription_id = models.CharField(
        max_length=80, blank=True, help_text="The VRF subscription paying for the requests"
    )
    vrf_key_hash = models.CharField(
        max_length=66, blank=True, help_text="The VRF key hash (gas lane) of the requests"
    )
    cid_profile = models.CharField(
        "CID profile",
        max_length=20,
        choices=CID_PROFILE_CHOICES,
        default="unixfs-v1-2025",
        help_text="How images, metadata and weights are chunked into IPFS CIDs (frozen with "
        "the config, so a verifier rebuilds the same CIDs): unixfs-v1-2025 is what new Kubo "
        "nodes, Helia and ipfs-car produce; legacy is Kubo's classic ipfs add --cid-version=1",
    )
    publish_weights = models.BooleanField(
        default=False,
        help_text="Pin the model, CLIP, adapters, ONNX export and style images to IPFS before "
        "the freeze, and record their CIDs in the frozen config, so anyone can re-render a "
        "token from public data (mintverify --fetch-weights; docs/provenance.md)",
    )

    # The contract metadata's pictures for marketplaces' collection pages (ERC-7572,
    # generation/collection_image.py): pinned to IPFS into the contract metadata when the freeze
    # is prepared. Not part of the generation config: they shape no token.
    image = models.CharField(
        "collection image",
        max_length=config_limits.PATH_MAX,
        blank=True,
        validators=[printable_line],
        help_text="The collection's picture on marketplaces: an image file inside the model "
        "folders the operator allows; empty: the first style image, or else a card with the "
        "collection's name. Pinned into the contract metadata when the freeze is prepared",
    )
    banner_image = models.CharField(
        max_length=config_limits.PATH_MAX,
        blank=True,
        validators=[printable_line],
        help_text="A wide banner for marketplaces' collection page (optional; an image file in "
        "the same folders), pinned with the collection image",
    )

    paused = models.BooleanField(
        default=False,
        help_text="Paused: no token of the collection starts rendering or publishing; mints "
        "are still recorded and seeds committed, and everything resumes when unpaused",
    )
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="managed_collections",
        help_text="Staff users who may see and run this collection in the admin",
    )

    config_digest = models.CharField(
        max_length=66, blank=True, help_text="sha256 of the frozen generation config, on-chain"
    )
    contract_uri = models.CharField(max_length=200, blank=True, help_text="ERC-7572 metadata")
    # The freeze transaction the admin prepared for the contract admin to sign elsewhere
    # (chain/freeze.py): what shapes the output is locked from then on, since the digest in it
    # is of this config; the listener records the freeze once the chain holds this digest.
    prepared_config_digest = models.CharField(
        max_length=66, blank=True, help_text="digest of the freeze transaction prepared to sign"
    )
    prepared_contract_uri = models.CharField(
        max_length=200, blank=True, help_text="contract metadata of the prepared freeze"
    )

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "contract_address"], name="collection_unique_contract"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.contract_address} on {self.chain_id})"

    def clean(self) -> None:
        from generation.traits import validate_rarity, validate_template

        errors: dict[str, list[str]] = {}
        rarity_problems = validate_rarity(self.rarity, max_supply=self.max_supply or 1)
        if not rarity_problems:
            rarity_problems = config_limits.rarity_problems(self.rarity)
        if rarity_problems:
            errors["rarity"] = rarity_problems
        else:
            template_problems = validate_template(self.prompt_template, self.rarity)
            if not template_problems and isinstance(self.prompt_template, str):
                longest = config_limits.longest_prompt(self.prompt_template, self.rarity)
                if longest > config_limits.PROMPT_MAX:
                    template_problems.append(
                        f"prompt_template: its longest prompt (with the longest option "
                        f"fragments, a {config_limits.TOKEN_ID_DIGITS}-digit token id and a "
                        f"{config_limits.NAME_MAX}-character name) is {longest} characters, "
                        f"more than {config_limits.PROMPT_MAX}"
                    )
            if template_problems:
                errors["prompt_template"] = template_problems
        errors.update(self._check_seed_source())
        outside = self._check_locations()
        errors.update(outside)
        if "style_images" not in outside:
            errors.update(self._check_style_images())
        errors.update(self._check_marketplace_images(outside))
        if not {"model_dir", "model_config_dir"} & set(outside):
            errors.update(self._check_model_reference())
        if not {"model_dir", "model_config_dir", "lora_adapters", "onnx_dir"} & set(errors):
            errors.update(self._check_levers())
        lock = self._config_lock()
        if self.pk and lock:
            stored = Collection.objects.filter(pk=self.pk).values(*FROZEN_FIELDS).first() or {}
            for name in FROZEN_FIELDS:
                if name in stored and stored[name] != getattr(self, name):
                    errors.setdefault(name, []).append(lock)
        if errors:
            raise ValidationError(errors)

    def _config_lock(self) -> str:
        """Why what shapes the output cannot change now ("" when it can)."""
        if self.config_digest:
            return (
                f"frozen: the collection's config digest {self.config_digest} is committed "
                "on-chain, so what shapes its output can no longer change"
            )
        if self.prepared_config_digest:
            return (
                f"locked: a freeze transaction committing config digest "
                f"{self.prepared_config_digest} is prepared for signing; withdraw it on the "
                "collection's freeze page to change the config"
            )
        return ""

    @property
    def config_locked(self) -> bool:
        """Frozen on-chain, or a freeze of this config is prepared for signing."""
        return bool(self.config_digest or self.prepared_config_digest)

    def _check_seed_source(self) -> dict[str, list[str]]:
        """A VRF coordinator needs its subscription and key hash, and excludes a seed delay."""
        errors: dict[str, list[str]] = {}
        if not self.vrf_coordinator:
            return errors
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.vrf_coordinator):
            errors["vrf_coordinator"] = [f"{self.vrf_coordinator!r} is not a 0x address"]
        if not str(self.vrf_subscription_id).isdigit():
            errors["vrf_subscription_id"] = ["a VRF coordinator needs the subscription id (digits)"]
        if not re.fullmatch(r"0x[0-9a-fA-F]{64}", self.vrf_key_hash or ""):
            errors["vrf_key_hash"] = ["a VRF coordinator needs the key hash (0x + 64 hex digits)"]
        if self.seed_delay:
            errors["seed_delay"] = ["seeds come from VRF or from a later block, not both"]
        return errors

    def style_image_paths(self) -> list[Path]:
        return [_resolve(path) for path in self.style_images]

    def _check_locations(self) -> dict[str, list[str]]:
        """Every model path (and style and marketplace image) must be inside MODEL_ROOTS; one message for
        any path outside, whatever is there (generation/model_roots.py)."""
        errors: dict[str, list[str]] = {}
        for name in (
            "model_dir",
            "model_config_dir",
            "clip_dir",
            "onnx_dir",
            "image",
            "banner_image",
        ):
            value = getattr(self, name)
            if value and not model_roots.is_confined(value):
                errors[name] = [model_roots.outside_message(value)]
        adapter_problems = _adapter_problems(self.lora_adapters)
        if adapter_problems:
            errors["lora_adapters"] = adapter_problems
        images = self.style_images
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
            errors["style_images"] = ["must be a list of image file paths"]
            return errors
        problems = config_limits.style_images_problems(images)
        if not problems:
            problems = [
                model_roots.outside_message(path)
                for path in images
                if not model_roots.is_confined(path)
            ]
        if problems:
            errors["style_images"] = problems
        return errors

    def _check_style_images(self) -> dict[str, list[str]]:
        from PIL import Image, UnidentifiedImageError

        problems = []
        for path in self.style_image_paths():
            try:
                with Image.open(path) as image:
                    image.verify()
            except (OSError, UnidentifiedImageError) as exc:
                problems.append(f"{path}: not a readable image ({exc})")
        if self.style_images and self.style_images_threshold is None:
            problems.append("reference images need style_images_threshold")
        return {"style_images": problems} if problems else {}

    def _check_marketplace_images(self, outside: dict[str, list[str]]) -> dict[str, list[str]]:
        """The collection image and banner, when chosen: inside MODEL_ROOTS, and images."""
        from PIL import Image, UnidentifiedImageError

        errors: dict[str, list[str]] = {}
        for name in ("image", "banner_image"):
            value = getattr(self, name)
            if not value or name in outside:
                continue
            try:
                with Image.open(_resolve(value)) as image:
                    image.verify()
            except (OSError, UnidentifiedImageError) as exc:
                errors[name] = [f"{value}: not a readable image ({exc})"]
        return errors

    def marketplace_image_paths(self) -> tuple[Path | None, Path | None]:
        """The chosen collection image and banner (None where none is chosen)."""
        return (
            _resolve(self.image) if self.image else None,
            _resolve(self.banner_image) if self.banner_image else None,
        )

    def _check_model_reference(self) -> dict[str, list[str]]:
        from generation.errors import ModelReferenceError
        from generation.rendering import check_model_reference

        if not self.model_dir:
            return {}  # the field's own "required" error says it
        try:
            check_model_reference(self.model_path(), self.model_config_path())
        except ModelReferenceError as exc:
            return {exc.field: [str(exc)]}
        return {}

    def _check_levers(self) -> dict[str, list[str]]:
        """The adapters, quantization and ONNX folder checked against the model (each error
        under the field at fault; generation/render_levers.py)."""
        from generation.errors import ModelReferenceError
        from generation.reference_models import model_fingerprint
        from generation.render_levers import check_levers

        if not self.model_dir:
            return {}
        try:
            levers = self.levers()
        except (KeyError, TypeError, ValueError, AttributeError):
            return {"lora_adapters": ['must be a list of {"path": "…", "scale": number}']}
        if not levers.any:
            return {}
        try:
            check_levers(levers, model_fingerprint(self.model_path()))
        except ModelReferenceError as exc:
            return {exc.field: [str(exc)]}
        return {}

    def ipfs_profile(self) -> Any:
        """The :class:`ipfs.profiles.CidProfile` its content is pinned and checked with."""
        from ipfs.profiles import profile_named

        return profile_named(self.cid_profile)

    def levers(self) -> Any:
        """The collection's latency levers as a ``render_levers.Levers``."""
        from generation.render_levers import levers_from

        return levers_from(
            self.lora_adapters,
            self.quantization,
            _resolve(self.onnx_dir) if self.onnx_dir else None,
            resolve=_resolve,
        )

    def model_path(self) -> Path:
        return _resolve(self.model_dir)

    def model_config_path(self) -> Path | None:
        """Where the pipeline's component configs live: the model folder itself, or
        ``model_config_dir`` for a single-file checkpoint."""
        return _resolve(self.model_config_dir) if self.model_config_dir else None

    def clip_path(self) -> Path:
        return _resolve(self.clip_dir)


def _resolve(path: str) -> Path:
    return model_roots.under_first_root(path)


MAX_ADAPTERS = 8


def _adapter_problems(adapters: object) -> list[str]:
    """What is wrong with a ``lora_adapters`` value's shape and paths (the files themselves
    are checked against the model by ``render_levers.check_levers``)."""
    shape = 'must be a list of {"path": "…safetensors", "scale": number}'
    if not isinstance(adapters, list):
        return [shape]
    if len(adapters) > MAX_ADAPTERS:
        return [f"at most {MAX_ADAPTERS} adapters, not {len(adapters)}"]
    problems = []
    for i, adapter in enumerate(adapters):
        if (
            not isinstance(adapter, dict)
            or set(adapter) - {"path", "scale"}
            or not isinstance(adapter.get("path"), str)
            or not adapter["path"]
            or isinstance(adapter.get("scale", 1.0), bool)
            or not isinstance(adapter.get("scale", 1.0), int | float)
        ):
            problems.append(f"adapter {i + 1}: {shape}")
        elif not model_roots.is_confined(adapter["path"]):
            problems.append(f"adapter {i + 1}: {model_roots.outside_message(adapter['path'])}")
    return problems


class TokenQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        """``updated_at`` moves with every change: the pipeline moves tokens with conditional
        UPDATEs, which ``auto_now`` (a ``save()`` feature) never sees. The API shows it, and
        "untouched for N seconds" (stale publish claims, tokens waiting for their seed
        commit) reads it."""
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)


class Token(models.Model):
    """A minted token, from the mint log to its published metadata."""

    objects = TokenQuerySet.as_manager()

    class Status(models.TextChoices):
        CONFIRMED = "CONFIRMED", "confirmed"
        SEED_COMMITTED = "SEED_COMMITTED", "seed committed"
        RENDERING = "RENDERING", "rendering"
        RENDERED = "RENDERED", "rendered and verified"
        PINNED = "PINNED", "pinned"
        PUBLISHING = "PUBLISHING", "publishing"
        PUBLISHED = "PUBLISHED", "published"
        FINAL = "FINAL", "final"
        REORGED = "REORGED", "reorged"
        NEEDS_REVIEW = "NEEDS_REVIEW", "needs review"
        FAILED = "FAILED", "failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="tokens")
    token_id = models.PositiveBigIntegerField()
    owner = models.CharField(max_length=42)
    mint_tx_hash = models.CharField(max_length=66)
    mint_log_index = models.PositiveIntegerField()
    mint_block_number = models.PositiveBigIntegerField()
    mint_block_hash = models.CharField(max_length=66)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONFIRMED)
    failure_reason = models.TextField(blank=True)

    expected_seed = models.CharField(
        max_length=66,
        blank=True,
        help_text="keccak256(seed block hash ‖ token id); empty until the seed block is confirmed "
        "for a collection with a seed delay",
    )
    seed_record = models.JSONField(
        default=dict,
        blank=True,
        help_text="For a VRF seed: the request id, the random word and the fulfilment transaction",
    )
    seed_block_hash = models.CharField(
        max_length=66,
        blank=True,
        help_text="Hash of the block that seeds the token (mint block + the collection's seed "
        "delay), when that is not the mint block",
    )
    seed = models.CharField(max_length=66, blank=True, help_text="As stored by the contract")
    seed_tx_hash = models.CharField(max_length=66, blank=True)

    attempt = models.PositiveIntegerField(default=0)
    traits = models.JSONField(default=dict, blank=True, help_text="category → option")
    image_embedding = models.BinaryField(
        null=True, blank=True, help_text="CLIP embedding of the accepted image (float32 LE)"
    )
    image_signature = models.BinaryField(
        null=True,
        blank=True,
        help_text="Near-duplicate signature of the accepted image (generation/near_duplicates.py;"
        " float32 LE)",
    )
    render_record = models.JSONField(
        default=dict, blank=True, help_text="Every parameter that shaped the accepted image"
    )
    image_sha256 = models.CharField(max_length=64, blank=True)
    clip_scores = models.JSONField(default=dict, blank=True)
    image_cid = models.CharField(max_length=100, blank=True)
    metadata_cid = models.CharField(max_length=100, blank=True)
    metadata_sha256 = models.CharField(max_length=64, blank=True)
    publish_tx_hash = models.CharField(max_length=66, blank=True)
    publish_claim = models.CharField(
        max_length=32, blank=True, help_text="The publishing run that holds this token"
    )
    publish_block_number = models.PositiveBigIntegerField(null=True, blank=True)
    # The render that holds this RENDERING token (generation/pipeline.py): another delivery of
    # its message stands down until the lease lapses, and a run that lost it writes nothing.
    render_lease_owner = models.CharField(max_length=100, blank=True)
    render_lease_expires = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Exactly once: one row per token of a contract, and one per mint log.
            models.UniqueConstraint(fields=["collection", "token_id"], name="token_unique_id"),
            models.UniqueConstraint(
                fields=["collection", "mint_tx_hash", "mint_log_index"], name="token_unique_log"
            ),
        ]
        indexes = [models.Index(fields=["status"])]
        ordering = ["collection_id", "token_id"]

    def __str__(self) -> str:
        return f"{self.collection.slug} #{self.token_id}"

    @property
    def token_uri(self) -> str:
        return f"ipfs://{self.metadata_cid}" if self.metadata_cid else ""

    @property
    def seed_bytes(self) -> bytes:
        """The committed seed as 32 bytes (``seed`` is 0x-prefixed hex); empty before the
        commit."""
        return seed_bytes(self.seed)


def seed_bytes(seed_hex: str) -> bytes:
    """A seed as the database stores it (0x-prefixed hex) as bytes."""
    return bytes.fromhex(seed_hex.removeprefix("0x"))


class TokenEvent(models.Model):
    """One step of a token's way through the pipeline: the status it entered, when, and why.

    Written by ``generation.events.record`` wherever a token changes status; the API's stage
    history, the mint page's progress and the webhooks all read it.
    """

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20, choices=Token.Status.choices)
    detail = models.TextField(blank=True, help_text="Why, in words (a rejection, an error)")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["token", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.token_id} {self.status} at {self.at.isoformat()}"


class PinnedContent(models.Model):
    """One CID this backend pinned (a token's image or metadata, a collection's contract
    metadata, pictures, allowlist or published weights, a placeholder), with what re-pinning
    it takes: its CID profile, its label and, for a folder, the files it was built from.

    Each IPFS target's copy is a :class:`Pin`. Written by generation.pin_ledger; the pin check
    (generation.pin_check) asks each target for the contents checked longest ago.
    """

    class Kind(models.TextChoices):
        FILE = "file", "file"
        FOLDER = "folder", "folder"

    cid = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILE)
    profile = models.CharField(max_length=40, help_text="The CID profile it was built under")
    label = models.CharField(max_length=255, blank=True, help_text="The pin's name")
    size = models.BigIntegerField(default=0, help_text="Bytes (a folder: its files' total)")
    source = models.CharField(
        max_length=500, blank=True, help_text="A folder's files on disk, to pin it again"
    )
    # SET_NULL: a deleted collection's tokens are still on-chain, so its pins are still checked
    collection = models.ForeignKey(
        Collection, null=True, blank=True, on_delete=models.SET_NULL, related_name="pinned"
    )
    created_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the pin check last asked every target"
    )

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["checked_at"])]
        verbose_name_plural = "pinned content"

    def __str__(self) -> str:
        return f"{self.label or self.kind} {self.cid}"


class Pin(models.Model):
    """One IPFS target's copy of a :class:`PinnedContent`, as last seen: held, or missing and
    why (a failed pin, or a target that lost it). The pin check re-pins what is missing."""

    class State(models.TextChoices):
        PINNED = "PINNED", "pinned"
        MISSING = "MISSING", "missing"

    content = models.ForeignKey(PinnedContent, on_delete=models.CASCADE, related_name="pins")
    target = models.CharField(max_length=40, help_text="Its name in IPFS_TARGETS")
    state = models.CharField(max_length=10, choices=State.choices)
    error = models.TextField(blank=True, help_text="Why it is missing, or why a check failed")
    pinned_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["content_id", "target"]
        constraints = [
            models.UniqueConstraint(fields=["content", "target"], name="one_pin_per_target")
        ]
        indexes = [models.Index(fields=["target", "state"])]

    def __str__(self) -> str:
        return f"{self.content.cid} at {self.target}: {self.state}"
