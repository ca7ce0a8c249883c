"""Collections and the generation state of each token."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def _validate_prompt_template(value: str) -> None:
    try:
        value.format(token_id=1, collection="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            f"prompt template may only use {{token_id}} and {{collection}}: {exc!r}"
        ) from exc


class Collection(models.Model):
    """One ERC-721 contract on one chain, and how its tokens are generated."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    chain_id = models.PositiveBigIntegerField()
    contract_address = models.CharField(max_length=42, help_text="Checksummed 0x address")
    deployment_block = models.PositiveBigIntegerField(default=0)

    model_dir = models.CharField(
        max_length=500, help_text="Local diffusers folder (StableDiffusionPipeline)"
    )
    clip_dir = models.CharField(max_length=500, help_text="Local open_clip model folder")
    prompt_template = models.TextField(validators=[_validate_prompt_template])
    negative_prompt = models.TextField(blank=True)
    style_prompt = models.TextField(help_text="What CLIP compares each image with")
    clip_threshold = models.FloatField(
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="Minimum cosine similarity between image and style prompt",
    )
    steps = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)])
    guidance = models.FloatField(default=7.5, validators=[MinValueValidator(0.0)])
    width = models.PositiveIntegerField(default=64, validators=[MinValueValidator(8)])
    height = models.PositiveIntegerField(default=64, validators=[MinValueValidator(8)])
    max_attempts = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])

    config_digest = models.CharField(
        max_length=66, blank=True, help_text="sha256 of the frozen generation config, on-chain"
    )
    contract_uri = models.CharField(max_length=200, blank=True, help_text="ERC-7572 metadata")

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "contract_address"], name="collection_unique_contract"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.contract_address} on {self.chain_id})"

    def model_path(self) -> Path:
        return _resolve(self.model_dir)

    def clip_path(self) -> Path:
        return _resolve(self.clip_dir)


def _resolve(path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(settings.BASE_DIR) / candidate


class Token(models.Model):
    """A minted token, from the mint log to its published metadata."""

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

    expected_seed = models.CharField(max_length=66, help_text="keccak256(block hash ‖ token id)")
    seed = models.CharField(max_length=66, blank=True, help_text="As stored by the contract")
    seed_tx_hash = models.CharField(max_length=66, blank=True)

    attempt = models.PositiveIntegerField(default=0)
    render_record = models.JSONField(
        default=dict, blank=True, help_text="Every parameter that shaped the accepted image"
    )
    image_sha256 = models.CharField(max_length=64, blank=True)
    clip_scores = models.JSONField(default=dict, blank=True)
    image_cid = models.CharField(max_length=100, blank=True)
    metadata_cid = models.CharField(max_length=100, blank=True)
    metadata_sha256 = models.CharField(max_length=64, blank=True)
    publish_tx_hash = models.CharField(max_length=66, blank=True)
    publish_block_number = models.PositiveBigIntegerField(null=True, blank=True)

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
