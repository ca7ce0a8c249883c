"""The collector's pages: the mint page, the gallery and the token page.

The mint page works in the browser (``static/mintsite/mint.js`` with ethers, vendored at
install): the view renders what the script needs as JSON (chain, contract, the ABI subset, the
API paths) plus what it can read from the contract now, so the price and the supply left show
before any wallet is connected. The gallery and the token page are plain server-rendered HTML.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_safe
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from chain.chains import web3_for
from chain.contract import bind, contract_abi
from chain.errors import ChainError
from chain.models import Chain
from chain.sale_phase import PhaseStruct
from generation.models import Collection, Token
from mintsite.pages.progress import progress_document
from mintsite.pages.sale import Sale, labelled, read_sale

log = logging.getLogger(__name__)
Status = Token.Status

PUBLISHED = (Status.PUBLISHED, Status.FINAL)
GALLERY_PAGE_SIZE = 24
# What the mint page calls: reads, the sale's phases and a wallet's standing in them, the two
# mints and the refund claim, the Transfer event it takes the token ids from, and the errors a
# mint or a claim can revert with, so ethers can name them.
MINT_ABI_NAMES = {
    "function": {
        "mint",
        "mintAllowlisted",
        "claimRefund",
        "price",
        "maxSupply",
        "totalSupply",
        "saleRemaining",
        "reserve",
        "paused",
        "maxPerTx",
        "maxPerWallet",
        "numberMinted",
        "phaseCount",
        "scheduledPhase",
        "mintedInPhase",
        "refundOf",
        "tokenURI",
    },
    "event": {"Transfer"},
    "error": {
        "SoldOut",
        "WrongPayment",
        "TooManyPerTransaction",
        "WalletCapExceeded",
        "EnforcedPause",
        "ConfigNotFrozen",
        "ZeroQuantity",
        "SaleNotOpen",
        "AllowlistRequired",
        "NoAllowlistPhase",
        "NotAllowlisted",
        "PhaseCapExceeded",
        "NotAnAuction",
        "AuctionNotEnded",
        "NothingToClaim",
        "FailedCall",
    },
}
# Chain names and public RPC endpoints the wallet can add when it does not know the chain
# (wallet_addEthereumChain). Other chains get their Chain row's name and no endpoint.
KNOWN_CHAINS: dict[int, dict[str, Any]] = {
    1: {"name": "Ethereum", "rpc_urls": ["https://eth.llamarpc.com"]},
    11155111: {"name": "Sepolia", "rpc_urls": ["https://rpc.sepolia.org"]},
    8453: {"name": "Base", "rpc_urls": ["https://mainnet.base.org"]},
    84532: {"name": "Base Sepolia", "rpc_urls": ["https://sepolia.base.org"]},
    10: {"name": "OP Mainnet", "rpc_urls": ["https://mainnet.optimism.io"]},
    42161: {"name": "Arbitrum One", "rpc_urls": ["https://arb1.arbitrum.io/rpc"]},
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# A page view waits through one retry round at most, not the listener's patient backoff.
PAGE_RPC_RETRIES = 1


@dataclass
class ContractState:
    """What the mint page shows from the contract; ``error`` says why it could not be read."""

    price_wei: int | None = None
    max_supply: int | None = None
    total_supply: int | None = None
    paused: bool = False
    max_per_tx: int | None = None
    reserved_left: int = 0  # the creator's reserve not yet airdropped: never for sale
    sale: Sale | None = None  # the scheduled phases (pages/sale.py)
    error: str = ""

    @property
    def supply_left(self) -> int | None:
        """Tokens a collector can still buy (the contract's ``saleRemaining``)."""
        if self.max_supply is None or self.total_supply is None:
            return None
        return max(self.max_supply - self.total_supply - self.reserved_left, 0)

    @property
    def sold_out_message(self) -> str:
        if self.reserved_left:
            return (
                "Sold out: every token for sale has been minted "
                f"({self.reserved_left} kept in the creator's reserve)."
            )
        return f"Sold out: all {self.max_supply} tokens have been minted."

    @property
    def sold_out(self) -> bool:
        return self.supply_left == 0


def _web3(chain_id: int) -> Web3:
    w3 = web3_for(chain_id)
    w3.provider.retries = PAGE_RPC_RETRIES  # type: ignore[attr-defined]
    return w3


def _rpc_problem(collection: Collection, exc: Exception) -> str:
    """What a visitor is told; the details (RPC URLs may hold API keys) go to the log only."""
    log.warning(
        "%s: cannot read contract %s on chain %d: %s",
        collection.slug,
        collection.contract_address,
        collection.chain_id,
        exc,
    )
    return (
        f"The chain's RPC endpoint (chain {collection.chain_id}) could not be reached or "
        f"refused the call ({type(exc).__name__}), so the contract cannot be read right now. "
        "Try again in a moment."
    )


def _phase_names(collection: Collection) -> dict[int, tuple[PhaseStruct, str]]:
    """The manager's phase names (sales.SalePhase), by position, with the struct each stands for."""
    from sales.models import SalePhase

    return {
        phase.position: (phase.as_struct(), phase.name)
        for phase in SalePhase.objects.filter(collection=collection).select_related("allowlist")
    }


def read_contract_state(collection: Collection) -> ContractState:
    """Price, supply and pause state from the collection's contract, or the error."""
    try:
        contract = bind(_web3(collection.chain_id), collection.contract_address)
        state = ContractState(
            price_wei=contract.functions.price().call(),
            max_supply=contract.functions.maxSupply().call(),
            total_supply=contract.functions.totalSupply().call(),
            max_per_tx=contract.functions.maxPerTx().call(),
        )
        state.sale = labelled(read_sale(contract.w3, contract), _phase_names(collection))
    except (ChainError, Web3Exception, ConnectionError, ValueError) as exc:
        return ContractState(error=_rpc_problem(collection, exc))
    try:
        size, minted = contract.functions.reserve().call()
        state.reserved_left = max(int(size) - int(minted), 0)
    except ContractLogicError:
        pass  # a contract deployed before the creator reserve
    except (ChainError, Web3Exception, ConnectionError, ValueError) as exc:
        return ContractState(error=_rpc_problem(collection, exc))
    try:
        state.paused = contract.functions.paused().call()
    except ContractLogicError:
        pass  # a contract deployed without pausing
    except (ChainError, Web3Exception, ConnectionError, ValueError) as exc:
        return ContractState(error=_rpc_problem(collection, exc))
    return state


def read_token_uri(token: Token) -> tuple[str, str]:
    """(the tokenURI the contract returns now, an error message if it could not be read)."""
    collection = token.collection
    try:
        contract = bind(_web3(collection.chain_id), collection.contract_address)
        return contract.functions.tokenURI(token.token_id).call(), ""
    except (ChainError, Web3Exception, ConnectionError, ValueError) as exc:
        return "", _rpc_problem(collection, exc)


def format_ether(wei: int | None) -> str:
    """``10**16`` → ``"0.01"``: an amount of wei in ether, without trailing zeros."""
    if wei is None:
        return "?"
    whole, fraction = divmod(wei, 10**18)
    digits = f"{fraction:018d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def gateway_url(cid: str) -> str:
    return f"{settings.IPFS_GATEWAY_URL}/{cid}"


def _chain_info(chain_id: int) -> dict[str, Any]:
    """How the wallet names the chain, for wallet_switchEthereumChain / wallet_addEthereumChain."""
    known = KNOWN_CHAINS.get(chain_id, {})
    row = Chain.objects.filter(chain_id=chain_id).first()
    rpc_urls = list(known.get("rpc_urls", []))
    if chain_id == settings.EMBEDDED_CHAIN_ID and row is not None:
        # a local anvil: the wallet needs this very node; only a bare loopback URL (no path,
        # query or credentials) is given out, since anything else could carry an API key
        rpc_urls = [
            url for url in row.urls() if urlsplit(url).hostname in LOOPBACK and _bare_url(url)
        ]
    name = (row.name if row and row.name else "") or known.get("name") or f"Chain {chain_id}"
    if chain_id == settings.EMBEDDED_CHAIN_ID and not (row and row.name):
        name = "Anvil (local)"
    return {"id": chain_id, "hex_id": hex(chain_id), "name": name, "rpc_urls": rpc_urls}


def _mint_abi() -> list[dict[str, Any]]:
    return [
        entry
        for entry in contract_abi()
        if entry.get("name") in MINT_ABI_NAMES.get(entry.get("type", ""), set())
    ]


def mint_page_config(collection: Collection, state: ContractState) -> dict[str, Any]:
    """What mint.js needs, rendered into the page with json_script."""
    token_api = reverse(
        "collection-token-detail", kwargs={"slug": collection.slug, "token_id": 0}
    ).removesuffix("0/")
    token_page = reverse(
        "pages:token", kwargs={"slug": collection.slug, "token_id": 0}
    ).removesuffix("0/")
    return {
        "collection": collection.slug,
        "name": collection.name,
        "chain": _chain_info(collection.chain_id),
        "contract": collection.contract_address,
        "abi": _mint_abi(),
        # the status document is {token_api}{id}/, its event stream {token_api}{id}/stream/;
        # {token_api}?owner=0x… lists a wallet's tokens
        "token_api": token_api,
        # the lists' roots, and {allowlists_api}{id}/proofs/{address}/ an address's proof
        "allowlists_api": reverse("api-allowlists", kwargs={"slug": collection.slug}),
        "sale": state.sale.document() if state.sale is not None else None,
        "token_page": token_page,
        "price_wei": str(state.price_wei) if state.price_wei is not None else None,
        "max_supply": state.max_supply,
        "total_supply": state.total_supply,
        "reserved_left": state.reserved_left,
        "max_per_tx": state.max_per_tx,
        "paused": state.paused,
        "generation_paused": collection.paused,
        "poll_interval_ms": 1500,
        "confirmations": _confirmations(collection.chain_id),
        "progress": progress_document(),
    }


def _confirmations(chain_id: int) -> int | None:
    row = Chain.objects.filter(chain_id=chain_id).first()
    return row.confirmations if row and not row.confirmation_tag else None


# -- views ------------------------------------------------------------------------------------


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The only collection's mint page, or the list of collections when there are several."""
    collections = list(Collection.objects.order_by("created_at"))
    if len(collections) == 1:
        return _mint_page(request, collections[0])
    return render(request, "pages/home.html", {"collections": collections})


@require_safe
def mint_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _mint_page(request, get_object_or_404(Collection, slug=slug))


def _mint_page(request: HttpRequest, collection: Collection) -> HttpResponse:
    state = read_contract_state(collection)
    recent = Token.objects.filter(collection=collection, status__in=PUBLISHED).order_by(
        "-token_id"
    )[:6]
    return render(
        request,
        "pages/mint.html",
        {
            "collection": collection,
            "nav": "mint",
            "state": state,
            "price_eth": format_ether(state.price_wei),
            "sale": state.sale,
            "phase_cap": _phase_cap(state.sale),
            "config": mint_page_config(collection, state),
            "recent": [_card(token) for token in recent],
        },
    )


def _phase_cap(sale: Sale | None) -> str:
    """The open phase's per-wallet limit in words (mint.js's ``capText`` says the same)."""
    phase = sale.open_phase if sale is not None else None
    if phase is None:
        return ""
    cap = phase.max_per_wallet
    if phase.allowlist:
        return f"each wallet's allowance, at most {cap}" if cap else "each wallet's allowance"
    return f"{cap} per wallet" if cap else "no limit"


def _card(token: Token) -> dict[str, Any]:
    """A published token in a grid of cards: its image, name and trait values (table order)."""
    return {
        "token_id": token.token_id,
        "name": f"{token.collection.name} #{token.token_id}",
        "image_url": gateway_url(token.image_cid),
        "traits": _attributes(token) if token.traits else [],
        "url": reverse(
            "pages:token", kwargs={"slug": token.collection.slug, "token_id": token.token_id}
        ),
    }


@require_safe
def gallery(request: HttpRequest, slug: str) -> HttpResponse:
    collection = get_object_or_404(Collection, slug=slug)
    tokens = (
        Token.objects.filter(collection=collection, status__in=PUBLISHED)
        .select_related("collection")
        .order_by("token_id")
    )
    paginator = Paginator(tokens, GALLERY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "pages/gallery.html",
        {
            "collection": collection,
            "nav": "gallery",
            "page": page,
            "cards": [_card(token) for token in page.object_list],
            "total": paginator.count,
        },
    )


def _bare_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.path in ("", "/") and not (parts.query or parts.username or parts.password)


def _verify_config(collection: Collection, token_id: int) -> dict[str, Any] | None:
    """What the token page's "Check it yourself" panel starts from (static/mintsite/verify.js):
    the contract, the token, and an RPC and gateway the visitor may replace with their own."""
    if not collection.contract_address:
        return None
    # the wallet's RPC URLs: a known public endpoint, or the local anvil's bare loopback URL,
    # never one that could carry an API key; with none, the visitor enters their own
    shown = _chain_info(collection.chain_id)["rpc_urls"]
    return {
        "chain_id": collection.chain_id,
        "contract": collection.contract_address,
        "token_id": token_id,
        "rpc_url": shown[0] if shown else "",
        "gateway": settings.IPFS_GATEWAY_URL,
    }


@require_safe
def token_page(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    collection = get_object_or_404(Collection, slug=slug)
    token = (
        Token.objects.select_related("collection")
        .filter(collection=collection, token_id=token_id)
        .first()
    )
    if token is None:
        raise Http404(f"Token {token_id} of {collection.name} has not been minted or seen yet.")
    published = token.status in PUBLISHED
    on_chain_uri, chain_error = read_token_uri(token)
    record = token.render_record or {}
    model = record.get("model", {})
    clip = token.clip_scores or {}
    return render(
        request,
        "pages/token.html",
        {
            "collection": collection,
            "token": token,
            "published": published,
            "status_label": Status(token.status).label,
            "image_url": gateway_url(token.image_cid) if published else "",
            "metadata_url": gateway_url(token.metadata_cid) if published else "",
            "attributes": _attributes(token) if token.traits else [],
            "model": model,
            "render_settings": record.get("render", {}),
            "torch_seed": record.get("torch_seed"),
            "clip_model": clip.get("model_fingerprint", ""),
            "clip_rows": clip_rows(clip.get("scores", {}), clip.get("thresholds", {})),
            "on_chain_uri": on_chain_uri,
            "chain_error": chain_error,
            "uri_matches": bool(on_chain_uri) and on_chain_uri == token.token_uri,
            "status_api": reverse(
                "collection-token-detail", kwargs={"slug": slug, "token_id": token_id}
            ),
            "provenance_api": _provenance_api(slug, token_id) if published else "",
            "verify": _verify_config(collection, token_id) if published else None,
            "events": list(token.events.all()),
        },
    )


def _provenance_api(slug: str, token_id: int) -> str:
    """The API's provenance document of the token, where this deployment's API has one."""
    try:
        return reverse("api-token-provenance", kwargs={"slug": slug, "token_id": token_id})
    except NoReverseMatch:
        return ""


def _attributes(token: Token) -> list[dict[str, Any]]:
    """The metadata's attributes and its rarity figures (the functions that built them), each
    attribute with its option's probability as a percentage."""
    from generation.traits import attributes, trait_rarity

    collection = token.collection
    table, supply = collection.rarity, collection.max_supply
    try:
        rows = attributes(token.traits, table, max_supply=supply)
        figures = trait_rarity(token.traits, table, max_supply=supply)
    except ValueError as exc:  # a trait no longer in the table: show it, say so
        log.warning("%s: traits do not match the rarity table: %s", token, exc)
        return [{"trait_type": k, "value": v, "percent": None} for k, v in token.traits.items()]
    return [{**row, "percent": round(figures[row["trait_type"]] * 100, 2)} for row in rows]


def clip_rows(scores: dict[str, float], thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """One row per CLIP score with its threshold and whether it passes.

    ``uniqueness_max`` passes below its threshold (the nearest earlier image must not be too
    similar), ``near_duplicate_min`` above it (nor too close); every other score passes at or
    above its threshold.
    """
    rows = []
    for name, score in scores.items():
        threshold = thresholds.get(name)
        rule = {"uniqueness_max": "below", "near_duplicate_min": "above"}.get(name, "at least")
        passed = None
        if threshold is not None:
            passed = {
                "below": score < threshold,
                "above": score > threshold,
                "at least": score >= threshold,
            }[rule]
        rows.append(
            {
                "name": name,
                "score": score,
                "threshold": threshold,
                "rule": rule,
                "passed": passed,
            }
        )
    return rows
