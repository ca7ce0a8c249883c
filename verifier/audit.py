"""The collection audit (``mintverify --collection``): what only the whole collection shows.

Each token's own checks (verifier/verification.py) prove that token against the chain; they
cannot see that two tokens share an image, or that the published traits of all of them break
the frozen rarity table. The audit runs every token's checks, then reads the collection as a
marketplace shows it (the published metadata's ``attributes`` and ``image``) and reports:

- **tokens**: how many are minted, published, and still on the placeholder (no digest on-chain);
  each token that fails one of its own checks, with the checks it fails;
- **quota** (quota-mode tables): per option, the published count against its quota; more than
  the quota is a violation, and so is any difference from the counts the on-chain seeds give
  (the quota replay). Once every token of the supply is published the counts must equal the
  quotas exactly;
- **frequencies** (weighted-mode tables): per category, Pearson's chi-square goodness-of-fit
  test of the published counts against the frozen weights, with its p-value; a p-value below
  :data:`SIGNIFICANCE` is a finding. With few tokens the test has little power, and with
  expected counts under 5 its p-value is approximate: the report says so;
- **duplicates**: tokens whose images are the same bytes (the same CID);
- **near duplicates** (with the ``render`` extra installed): every pair of published images at
  or below the frozen config's near-duplicate threshold (:mod:`generation.near_duplicates`, the
  gate's own distance), which catches copies of each other made by two workers at the same
  moment, which the gate, comparing each render only with tokens accepted before it, cannot;
  with the weights, also every pair whose CLIP embeddings are at or above the frozen
  ``uniqueness_threshold`` (the gate's embedding check), and the most similar pair.

Nothing here reads the project's database: the chain, a gateway, and optionally the weights.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from verifier.checks import State
from verifier.fetching import Gateway, connect
from verifier.report import FAIL, Check
from verifier.rerender import CLIP_TOLERANCE, PIXEL_TOLERANCE, Models, Weights
from verifier.verification import resolve_weights, verify_token
from verifier.weights_cache import FetchWeights

SIGNIFICANCE = 0.001
"""A category's chi-square p-value below this is reported as a finding."""


@dataclass
class Audit:
    """The audit of one collection; :attr:`findings` lists what is wrong, in words."""

    contract: str
    name: str
    max_supply: int | None
    minted: int
    published: list[int] = field(default_factory=list)
    placeholder: list[int] = field(default_factory=list)
    failing: dict[int, list[str]] = field(default_factory=dict)
    quota: list[str] = field(default_factory=list)
    frequencies: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[list[int]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    clip: dict[str, Any] | None = None
    """With weights: the most similar pair by CLIP and the frozen uniqueness threshold."""
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["failing"] = {str(k): v for k, v in self.failing.items()}
        document["verdict"] = "PASS" if self.clean else "FAIL"
        return document


def chi2_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X chi-square with ``df`` degrees of freedom: the regularized upper
    incomplete gamma function Q(df/2, statistic/2), by its series below a + 1 and its continued
    fraction above (Numerical Recipes, 6.2)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if statistic <= 0:
        return 1.0
    a, x = df / 2.0, statistic / 2.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-15:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def published_traits(metadata: dict[str, Any]) -> dict[str, str]:
    """The traits a marketplace shows: the metadata's ``attributes`` as category → value."""
    return {
        str(a.get("trait_type")): str(a.get("value"))
        for a in metadata.get("attributes", [])
        if isinstance(a, dict)
    }


def audit_collection(
    rpc_url: str,
    contract: str,
    gateway: str | Sequence[str] | Gateway,
    weights: Path | str | Weights | FetchWeights | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    pixel_tolerance: float = PIXEL_TOLERANCE,
    clip_tolerance: float = CLIP_TOLERANCE,
) -> Audit:
    """Audit every minted token of the collection at ``contract`` (see the module docstring);
    raises ``VerifyError`` for unusable input."""
    resolved = resolve_weights(weights)
    _, bound, _ = connect(rpc_url, contract)
    if not isinstance(gateway, Gateway):
        gateway = Gateway(gateway)
    minted = int(bound.functions.totalSupply().call())
    audit = Audit(contract, bound.functions.name().call(), None, minted)
    models = Models()
    config: dict[str, Any] | None = None
    shown: dict[int, dict[str, str]] = {}  # published attributes
    replayed: dict[int, dict[str, str]] = {}  # recomputed from the on-chain seeds
    images: dict[int, tuple[str, bytes]] = {}
    # with --fetch-weights, the weights the first token fetched score the CLIP pairs
    clip_weights = resolved if isinstance(resolved, Weights) else None
    for token_id in range(1, minted + 1):
        state = State(token_id=token_id)
        checks = verify_token(
            rpc_url,
            contract,
            token_id,
            gateway,
            resolved,
            device=device,
            dtype=dtype,
            pixel_tolerance=pixel_tolerance,
            clip_tolerance=clip_tolerance,
            models=models,
            state=state,
        )
        config = config or state.config
        clip_weights = clip_weights or state.extra.get("weights")
        if _on_placeholder(checks):
            audit.placeholder.append(token_id)
            continue
        failed = [c.name for c in checks if c.status == FAIL]
        if failed:
            audit.failing[token_id] = failed
        if state.metadata is None:
            continue
        audit.published.append(token_id)
        shown[token_id] = published_traits(state.metadata)
        if state.traits is not None:
            replayed[token_id] = state.traits
        if state.image is not None:
            images[token_id] = (str(state.metadata.get("image", "")), state.image)
    for token_id, names in audit.failing.items():
        audit.findings.append(f"token {token_id} fails its own checks: {', '.join(names)}")
    if audit.placeholder:
        audit.notes.append(
            f"{len(audit.placeholder)} minted token(s) still on the placeholder (not published): "
            + ", ".join(map(str, audit.placeholder))
        )
    if config is None:
        audit.notes.append("the collection's frozen config could not be verified: no rarity audit")
    else:
        audit.max_supply = int(config["max_supply"])
        _audit_rarity(audit, config, shown, replayed)
    _audit_duplicates(audit, config, images)
    if clip_weights is not None:
        _audit_clip(audit, config, images, models.scorer(clip_weights, device or "cpu"))
    else:
        audit.notes.append(
            "CLIP similarity among all tokens not computed: give --weights (or --fetch-weights "
            "for a collection that publishes them)"
        )
    return audit


def _on_placeholder(checks: list[Check]) -> bool:
    digest = next(c for c in checks if c.name == "metadata_digest")
    return digest.status == FAIL and digest.detail.startswith("not published")


def _audit_rarity(
    audit: Audit,
    config: dict[str, Any],
    shown: dict[int, dict[str, str]],
    replayed: dict[int, dict[str, str]],
) -> None:
    table = config["rarity"] or {}
    mode = table.get("mode", "none")
    for category in table.get("categories", []):
        name = category["name"]
        options = [o["name"] for o in category["options"]]
        counts = Counter(traits.get(name) for traits in shown.values())
        strays = sorted(str(v) for v in counts if v not in options)
        if strays:
            audit.findings.append(
                f"{name}: published values not in the frozen table: {', '.join(strays)}"
            )
        if mode == "quota":
            _audit_quota(audit, category, counts, replayed, len(shown))
        elif mode == "weighted":
            _audit_weights(audit, category, counts)


def _audit_quota(
    audit: Audit,
    category: dict[str, Any],
    counts: Counter[str | None],
    replayed: dict[int, dict[str, str]],
    published: int,
) -> None:
    name = category["name"]
    seeds_give = Counter(traits.get(name) for traits in replayed.values())
    everything = published == audit.max_supply
    for option in category["options"]:
        value, quota = option["name"], int(option["quota"])
        got = counts.get(value, 0)
        line = f"{name}={value}: {got} published, quota {quota}"
        if got > quota:
            audit.findings.append(f"quota violated: {line}")
        elif everything and got != quota:
            audit.findings.append(f"quota not met with the whole supply published: {line}")
        if len(replayed) == published and seeds_give.get(value, 0) != got:
            audit.findings.append(
                f"{name}={value}: {got} published, the on-chain seeds give "
                f"{seeds_give.get(value, 0)}"
            )
        audit.quota.append(line + (" (exact: the whole supply is published)" if everything else ""))


def _audit_weights(audit: Audit, category: dict[str, Any], counts: Counter[str | None]) -> None:
    name = category["name"]
    options = category["options"]
    total_weight = sum(float(o["weight"]) for o in options)
    n = sum(counts.get(o["name"], 0) for o in options)
    if n == 0 or len(options) < 2:
        return
    observed = [counts.get(o["name"], 0) for o in options]
    expected = [n * float(o["weight"]) / total_weight for o in options]
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    df = sum(1 for e in expected if e > 0) - 1
    p_value = chi2_sf(statistic, df) if df >= 1 else 1.0
    row = {
        "category": name,
        "observed": {o["name"]: c for o, c in zip(options, observed, strict=True)},
        "expected": {o["name"]: round(e, 3) for o, e in zip(options, expected, strict=True)},
        "chi_square": round(statistic, 6),
        "df": df,
        "p_value": round(p_value, 6),
        "test": "Pearson's chi-square goodness of fit against the frozen weights",
        "approximate": min(expected) < 5,
    }
    audit.frequencies.append(row)
    if p_value < SIGNIFICANCE:
        audit.findings.append(
            f"{name}: published frequencies do not fit the weights (chi-square "
            f"{statistic:.3f}, df {df}, p {p_value:.2e} < {SIGNIFICANCE})"
        )


def _audit_duplicates(
    audit: Audit, config: dict[str, Any] | None, images: dict[int, tuple[str, bytes]]
) -> None:
    by_image: dict[str, list[int]] = {}
    for token_id, (uri, _) in sorted(images.items()):
        by_image.setdefault(uri, []).append(token_id)
    for uri, tokens in by_image.items():
        if len(tokens) > 1:
            audit.duplicates.append(tokens)
            audit.findings.append(
                f"tokens {', '.join(map(str, tokens))} share one image ({uri}): the same bytes"
            )
    try:
        import numpy as np
        from PIL import Image

        from generation import near_duplicates
    except ImportError:
        audit.notes.append("near duplicates not compared: needs the render extra (numpy, Pillow)")
        return
    threshold = ((config or {}).get("near_duplicates") or {}).get("threshold")
    order = sorted(images)
    decoded = {t: Image.open(BytesIO(images[t][1])).convert("RGB") for t in order}
    signatures = {t: near_duplicates.signature(decoded[t]) for t in order}
    nearest: float | None = None
    for i, later in enumerate(order[1:], start=1):
        earlier = order[:i]
        distances = near_duplicates.distances(
            decoded[later], np.stack([signatures[t] for t in earlier])
        )
        for token, distance in zip(earlier, distances.tolist(), strict=True):
            nearest = distance if nearest is None else min(nearest, distance)
            if threshold is not None and distance <= threshold:
                audit.near_duplicates.append(
                    {"tokens": [token, later], "distance": round(distance, 6)}
                )
                if images[token][0] != images[later][0]:
                    audit.findings.append(
                        f"tokens {token} and {later} are near duplicates: distance "
                        f"{distance:.6f} <= the frozen threshold {threshold}"
                    )
    if threshold is None:
        audit.notes.append(
            "the collection froze no near-duplicate threshold: nearest pair distance "
            + ("n/a" if nearest is None else f"{nearest:.6f}")
        )


def _audit_clip(
    audit: Audit,
    config: dict[str, Any] | None,
    images: dict[int, tuple[str, bytes]],
    scorer: Any,
) -> None:
    """Every pair of published images by the cosine similarity of their CLIP embeddings (the
    gate's uniqueness check, over all tokens instead of those accepted before each): a pair at
    or above the frozen ``uniqueness_threshold`` is a finding."""
    import numpy as np
    from PIL import Image

    order = sorted(images)
    if len(order) < 2:
        return
    embeddings = np.stack(
        [scorer.image_embedding(Image.open(BytesIO(images[t][1])).convert("RGB")) for t in order]
    )
    similarity = embeddings @ embeddings.T
    threshold = (config or {}).get("uniqueness_threshold")
    top = max(
        (float(similarity[i, j]), order[i], order[j])
        for i in range(len(order))
        for j in range(i + 1, len(order))
    )
    audit.clip = {"max_similarity": round(top[0], 6), "pair": [top[1], top[2]],
                  "threshold": threshold}  # fmt: skip
    if threshold is None:
        return
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            value = float(similarity[i, j])
            if value >= threshold and images[order[i]][0] != images[order[j]][0]:
                audit.findings.append(
                    f"tokens {order[i]} and {order[j]} are CLIP near duplicates: similarity "
                    f"{value:.6f} >= the frozen uniqueness threshold {threshold}"
                )


def render_audit(audit: Audit) -> str:
    """The audit as text: what was read, each part's lines, findings, and the verdict."""
    lines = [
        f"collection {audit.name} ({audit.contract})",
        f"  tokens: {audit.minted} minted"
        + (f" of {audit.max_supply}" if audit.max_supply is not None else "")
        + f", {len(audit.published)} published, {len(audit.placeholder)} on the placeholder, "
        f"{len(audit.failing)} failing their own checks",
    ]
    lines += [f"  quota: {line}" for line in audit.quota]
    for row in audit.frequencies:
        counts = ", ".join(
            f"{k} {v} (expected {row['expected'][k]})" for k, v in row["observed"].items()
        )
        lines.append(
            f"  frequencies: {row['category']}: {counts}; chi-square {row['chi_square']}, "
            f"df {row['df']}, p {row['p_value']}"
            + (" (approximate: an expected count under 5)" if row["approximate"] else "")
        )
    lines.append(
        f"  duplicates: {len(audit.duplicates)} shared image(s), "
        f"{len(audit.near_duplicates)} pair(s) at or below the near-duplicate threshold"
    )
    if audit.clip is not None:
        lines.append(
            f"  CLIP: most similar pair {audit.clip['pair']} at {audit.clip['max_similarity']}"
            f" (uniqueness threshold {audit.clip['threshold']})"
        )
    lines += [f"  note: {note}" for note in audit.notes]
    lines += [f"  FINDING: {finding}" for finding in audit.findings]
    lines.append(f"  verdict: {'PASS' if audit.clean else 'FAIL'} ({len(audit.findings)} findings)")
    return "\n".join(lines)
