"""What the mint page shows a collector of a token's way through the pipeline.

mint.js has no copy of the statuses: it reads this document from the page's config (rendered
with json_script). The steps follow the stage table (generation/stages.py); each status says
which steps are active while a token is at it, its badge and what is happening, in a
collector's words. tests/test_stages.py checks every status has its words here.
"""

from __future__ import annotations

from typing import Any

from generation import stages
from generation.models import Token
from mintsite.api.documents import PUBLISHED, TERMINAL

Status = Token.Status

# The steps a collector sees, in order: the pipeline's stages (the render stage shows its two
# halves, the render and the CLIP check) between the mint's confirmation and finality.
STEPS = {
    "confirming": "Confirming",
    stages.SEED_COMMIT.name: "Seed committed",
    stages.RENDER.name: "Rendering",
    "verify": "Verifying",
    stages.PIN.name: "Pinning",
    stages.PUBLISH.name: "Publishing",
    "final": "Final",
}
_INDEX = {key: i for i, key in enumerate(STEPS)}

# status -> (first active step, last active step, badge, what is happening). A status a stage
# acts on shows that stage as next; one a stage holds a token at shows it as under way.
_AT: dict[str, tuple[str, str, str, str]] = {
    Status.CONFIRMED: (
        stages.SEED_COMMIT.name, stages.SEED_COMMIT.name, "committing seed",
        "Confirmed. The contract is committing the seed from the mint block's hash.",
    ),
    Status.SEED_COMMITTED: (
        stages.RENDER.name, stages.RENDER.name, "seed committed",
        "Seed committed on-chain. Waiting for a renderer.",
    ),
    Status.RENDERING: (
        stages.RENDER.name, "verify", "rendering",
        "Rendering the image from the seed and verifying it with CLIP.",
    ),
    Status.RENDERED: (
        stages.PIN.name, stages.PIN.name, "pinning",
        "Rendered and verified. Pinning the image and metadata to IPFS.",
    ),
    Status.PINNED: (
        stages.PIN.name, stages.PIN.name, "pinned",
        "Pinned to IPFS. Queued for the next publish transaction.",
    ),
    Status.PUBLISHING: (
        stages.PUBLISH.name, stages.PUBLISH.name, "publishing",
        "Publishing the metadata's hash on-chain.",
    ),
    Status.PUBLISHED: (
        "final", "final", "published",
        "Published. Waiting for the publish transaction's confirmations.",
    ),
}  # fmt: skip
STOPPED = {
    Status.REORGED: "The block holding this mint was reorganised away; the token no longer "
    "exists in that form.",
    Status.NEEDS_REVIEW: "The quality check rejected every render of this token; the studio "
    "reviews it by hand.",
    Status.FAILED: "The pipeline failed for this token.",
}


def progress_document() -> dict[str, Any]:
    """The steps, and for each status where it puts a token among them: [first, last] active
    step as indexes into ``steps`` (``len(steps)``: all done), its badge and what is happening.
    ``null`` is a mint the backend has not recorded yet."""
    statuses: dict[str, list[Any]] = {
        "null": [0, 0, "confirming", "Waiting for the mint's confirmations before the backend "
                 "records it."],
        Status.FINAL: [len(STEPS), len(STEPS), "final",
                       "Final: the metadata is on-chain and confirmed."],
    }  # fmt: skip
    for status, (first, last, badge, words) in _AT.items():
        statuses[status] = [_INDEX[first], _INDEX[last], badge, words]
    return {
        "steps": list(STEPS.values()),
        "statuses": statuses,
        "stopped": dict(STOPPED),
        "revealed": sorted(PUBLISHED),
        "terminal": sorted(TERMINAL),
    }
