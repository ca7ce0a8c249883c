"""Allowlists in the API: each list's root and pinned tree, and each address's proof.

Public, like every read: an allowlist's tree is pinned to IPFS for anyone anyway, and a proof is
what a collector's wallet sends to the contract. Throttled per client address as the other reads
are (REST_FRAMEWORK's default throttles). docs/api.md#allowlists.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mintsite.api import serializers as s
from mintsite.api.errors import InvalidRequest, NotFound
from mintsite.api.views import MAX_DB_INT, conditional, errors, get_collection, paginate
from sales.allowlist import check_address
from sales.models import Allowlist, AllowlistEntry

HEX32 = r"^0x[0-9a-f]{64}$"


# --- schema ----------------------------------------------------------------------------------


class AllowlistSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    collection = serializers.CharField(help_text="The collection's slug")
    # DRF's metaclass takes declared fields off the class, so this does not hide Field.root
    root = serializers.RegexField(HEX32, help_text="The Merkle root the contract is given")  # type: ignore[assignment]
    entries = serializers.IntegerField(help_text="How many addresses the list holds")
    leaf_encoding = serializers.ListField(
        child=serializers.CharField(), help_text='Always ["address", "uint256"]'
    )
    cid = serializers.CharField(
        allow_null=True,
        help_text="CID of the tree's StandardMerkleTree.dump() JSON; null until pinned",
    )
    tree_url = serializers.URLField(allow_null=True, help_text="The pinned tree on the gateway")
    created_at = serializers.DateTimeField()


AllowlistPage = s.page_of(AllowlistSerializer, "AllowlistPage")


class AllowlistProofSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="The address, checksummed")
    allowance = serializers.IntegerField(help_text="How many tokens it may mint in the phase")
    proof = serializers.ListField(
        child=serializers.RegexField(HEX32),
        help_text="bytes32[] for the contract: the sibling hashes from the leaf to the root",
    )
    root = serializers.RegexField(HEX32)  # type: ignore[assignment]  # as above
    cid = serializers.CharField(allow_null=True)
    allowlist = serializers.CharField(help_text="The allowlist's name")


# --- documents -------------------------------------------------------------------------------


def allowlist_document(allowlist: Allowlist, slug: str) -> dict[str, Any]:
    return {
        "id": allowlist.pk,
        "name": allowlist.name,
        "collection": slug,
        "root": allowlist.root,
        "entries": allowlist.entry_count,
        "leaf_encoding": ["address", "uint256"],
        "cid": allowlist.cid or None,
        "tree_url": f"{settings.IPFS_GATEWAY_URL}/{allowlist.cid}" if allowlist.cid else None,
        "created_at": allowlist.created_at.isoformat().replace("+00:00", "Z"),
    }


def get_allowlist(slug: str, name_or_id: str) -> Allowlist:
    """The allowlist of collection ``slug`` named ``name_or_id``, or with that id (a name is
    never only digits: sales.models)."""
    collection = get_collection(slug)
    lists = Allowlist.objects.filter(collection=collection)
    if name_or_id.isdigit():
        found = lists.filter(pk=int(name_or_id)).first() if int(name_or_id) <= MAX_DB_INT else None
    else:
        found = lists.filter(name=name_or_id).first()
    if found is None:
        raise NotFound(
            f"collection {slug} has no allowlist {name_or_id!r}", code="allowlist_not_found"
        )
    return found


# --- views -----------------------------------------------------------------------------------


class AllowlistList(APIView):
    @extend_schema(
        operation_id="collection_allowlists_list",
        tags=["allowlists"],
        summary="A collection's allowlists, newest first",
        parameters=[s.PageQuery],
        responses={200: AllowlistPage, **errors(400, 404, 429)},
    )
    def get(self, request: Request, slug: str) -> Response:
        collection = get_collection(slug)
        rows = Allowlist.objects.filter(collection=collection).order_by("-created_at", "-pk")

        def build(page: list[Allowlist]) -> list[dict[str, Any]]:
            return [allowlist_document(a, collection.slug) for a in page]

        return conditional(request, paginate(request, rows, build))


class AllowlistDetail(APIView):
    @extend_schema(
        operation_id="collection_allowlists_retrieve",
        tags=["allowlists"],
        summary="An allowlist (by name or id): its root, size and pinned tree",
        responses={200: AllowlistSerializer, **errors(404, 429)},
    )
    def get(self, request: Request, slug: str, allowlist: str) -> Response:
        return conditional(request, allowlist_document(get_allowlist(slug, allowlist), slug))


class AllowlistProof(APIView):
    @extend_schema(
        operation_id="collection_allowlists_proof",
        tags=["allowlists"],
        summary="An address's allowance and Merkle proof on an allowlist",
        responses={200: AllowlistProofSerializer, **errors(400, 404, 429)},
    )
    def get(self, request: Request, slug: str, allowlist: str, address: str) -> Response:
        try:
            checksummed = check_address(address)
        except ValueError as exc:
            raise InvalidRequest(str(exc), code="invalid_address") from None
        found = get_allowlist(slug, allowlist)
        entry = AllowlistEntry.objects.filter(allowlist=found, address=checksummed).first()
        if entry is None:
            raise NotFound(
                f"{checksummed} is not on allowlist {found.name!r} of {slug}",
                code="not_on_allowlist",
            )
        document = {
            "address": entry.address,
            "allowance": entry.allowance,
            "proof": entry.proof,
            "root": found.root,
            "cid": found.cid or None,
            "allowlist": found.name,
        }
        return conditional(request, document)
