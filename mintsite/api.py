"""The status API (thin for now: the surfaces issue adds lists, filters, SSE and webhooks)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import Collection, Token

PUBLISHED = {Token.Status.PUBLISHED, Token.Status.FINAL}


def token_document(token: Token) -> dict:
    doc = {
        "collection": token.collection.slug,
        "contract": token.collection.contract_address,
        "chain_id": token.collection.chain_id,
        "token_id": token.token_id,
        "owner": token.owner,
        "status": token.status,
        "failure_reason": token.failure_reason or None,
        "mint_tx": token.mint_tx_hash,
        "mint_block_number": token.mint_block_number,
        "mint_block_hash": token.mint_block_hash,
        "attempt": token.attempt,
        "updated_at": token.updated_at.isoformat(),
    }
    if token.status in PUBLISHED:
        doc.update(
            seed=token.seed,
            token_uri=token.token_uri,
            metadata_url=f"{settings.IPFS_GATEWAY_URL}/{token.metadata_cid}",
            image_cid=token.image_cid,
            image_url=f"{settings.IPFS_GATEWAY_URL}/{token.image_cid}",
            clip_scores=token.clip_scores.get("scores", {}),
            clip_thresholds=token.clip_scores.get("thresholds", {}),
            publish_tx=token.publish_tx_hash,
        )
    return doc


class TokenDetail(APIView):
    """``/api/tokens/<id>/`` answers for the only collection; with several, name the collection."""

    def get(self, request: Request, token_id: int, slug: str | None = None) -> Response:
        if slug is None:
            collections = list(Collection.objects.order_by("-created_at")[:2])
            if not collections:
                raise Http404("no collection is configured")
            if len(collections) > 1 and request.query_params.get("collection") is None:
                return Response(
                    {
                        "error": "ambiguous_collection",
                        "detail": "several collections exist: use "
                        "/api/collections/<slug>/tokens/<id>/ or ?collection=<slug>",
                    },
                    status=400,
                )
            slug = request.query_params.get("collection") or collections[0].slug
        token = (
            Token.objects.select_related("collection")
            .filter(collection__slug=slug, token_id=token_id)
            .first()
        )
        if token is None:
            return Response(
                {"error": "not_found", "detail": f"token {token_id} of {slug} has not been seen"},
                status=404,
            )
        return Response(token_document(token))
