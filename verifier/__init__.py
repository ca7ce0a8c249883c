"""Verify a token's provenance from public data alone: the chain, an IPFS gateway, the weights.

Nothing here reads the project's database or imports Django: the contract (over JSON-RPC) says
the mint block, the seed, the metadata digest and the frozen config digest; the gateway serves
the bytes those digests name; the optional weights let the image and its CLIP scores be
recomputed. A base install (``pip install mint-on-demand``) runs every check but the three that
need weights; ``mint-on-demand[render]`` adds torch, diffusers and open_clip for those.

Run it as ``mintverify`` / ``python -m verifier`` / ``manage.py verify_token``.

Modules: ``checks`` (public data), ``rerender`` (weights), ``fetching`` (RPC, gateways),
``verification`` (one token, every check), ``report`` (results, table, JSON), ``cli``.
"""

from __future__ import annotations

from verifier.cli import DESCRIPTION, add_arguments, main, parser, run
from verifier.errors import VerifyError
from verifier.fetching import PUBLIC_GATEWAY, Gateway, default_gateways
from verifier.report import FAIL, PASS, SKIPPED, Check, render_table, verdict
from verifier.rerender import CLIP_TOLERANCE, PIXEL_TOLERANCE, Models, Weights
from verifier.verification import verify_token
from verifier.weights_cache import FetchWeights

__all__ = [
    "CLIP_TOLERANCE",
    "DESCRIPTION",
    "FAIL",
    "PASS",
    "PIXEL_TOLERANCE",
    "PUBLIC_GATEWAY",
    "SKIPPED",
    "Check",
    "FetchWeights",
    "Gateway",
    "Models",
    "VerifyError",
    "Weights",
    "add_arguments",
    "default_gateways",
    "main",
    "parser",
    "render_table",
    "run",
    "verdict",
    "verify_token",
]
