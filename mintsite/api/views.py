"""The REST API: collections, tokens and their progress, provenance, requeue and webhooks.

Reads are public (throttled per address); writes need an API key of the collection in the URL.
docs/api.md describes each endpoint; /api/schema/ is the OpenAPI document, /api/docs/ browses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.http import QueryDict, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.canonical import canonical_json
from generation.metadata import build_metadata
from generation.models import Collection, Token, TokenEvent
from mintsite.api import holds
from mintsite.api import serializers as s
from mintsite.api.auth import CollectionKeyRequired
from mintsite.api.documents import (
    PUBLISHED,
    TERMINAL,
    collection_document,
    etag_for,
    event_document,
    rarity_document,
    status_counts,
    token_document,
)
from mintsite.api.errors import ApiError, InvalidRequest, NotFound, RequeueError
from mintsite.api.requeue import requeue
from mintsite.models import WebhookSubscription
from mintsite.notifier import watching

MAX_DB_INT = 2**63 - 1  # token ids above this cannot be stored, so were never seen
ERRORS = {
    code: OpenApiResponse(s.ErrorSerializer, description=text)
    for code, text in {
        400: "invalid request (`invalid_request`, with `fields`)",
        401: "no or an invalid API key (`api_key_required`, `invalid_api_key`)",
        403: "the key belongs to another collection (`wrong_collection`)",
        404: "not found (`collection_not_found`, `token_not_found`, ...)",
        409: "the token cannot be requeued (`not_requeueable`, `token_changed`)",
        429: "too many requests (`throttled`), or streams and long polls held open "
        "(`too_many_streams`); with `retry_after`",
    }.items()
}
KEY_AUTH = [{"apiKey": []}]
STREAMS_BUSY = OpenApiResponse(
    s.ErrorSerializer,
    description="`streams_busy`: this server holds all the streams and long polls it may "
    "(API_MAX_STREAMS_PER_PROCESS); poll instead, or retry after `retry_after`",
)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERRORS[code] for code in codes}


# --- lookups ---------------------------------------------------------------------------------


def get_collection(slug: str) -> Collection:
    collection = Collection.objects.filter(slug=slug).first()
    if collection is None:
        raise NotFound(f"no collection {slug!r}", code="collection_not_found")
    return collection


def get_token(slug: str, token_id: int) -> Token:
    token = None
    if token_id <= MAX_DB_INT:
        # (collection, token_id) is unique, so no ORDER BY (the model's default ordering, or
        # first()'s): compiling it costs the ORM time on every poll of the status endpoint
        rows = Token.objects.select_related("collection").order_by()
        token = next(iter(rows.filter(collection__slug=slug, token_id=token_id)[:1]), None)
    if token is None:
        get_collection(slug)
        raise NotFound(
            f"token {token_id} of {slug} has not been seen (not minted, or its mint is not "
            "confirmed yet)",
            code="token_not_found",
        )
    return token


def _default_slug(query: dict[str, Any]) -> str:
    """``/api/tokens/<id>/`` answers for the only collection, or the one ``?collection=`` names."""
    named = query.get("collection")
    if named:
        return named
    collections = list(
        Collection.objects.order_by("-created_at").values_list("slug", flat=True)[:2]
    )
    if not collections:
        raise NotFound("no collection is configured", code="collection_not_found")
    if len(collections) > 1:
        raise InvalidRequest(
            "several collections exist: use /api/collections/<slug>/tokens/<id>/ or "
            "?collection=<slug>",
            code="ambiguous_collection",
        )
    return collections[0]


# --- responses -------------------------------------------------------------------------------


def _etag_matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match value (or ``?since=``, where the quotes may be left out) names
    ``etag``; weak comparison, as for GET."""
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return etag.strip('"') in tags


def conditional(request: Request, data: Any, etag: str | None = None) -> Response:
    """200 with an ETag, or 304 when the client's If-None-Match already has it: cheap polling."""
    etag = etag or etag_for(data)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        return Response(status=304, headers=headers)
    return Response(data, headers=headers)


def paginate(
    request: Request, queryset: QuerySet, build: Callable[[list[Any]], list[dict[str, Any]]]
) -> dict[str, Any]:
    """A page of ``queryset`` (which must be ordered) as {count, page, pages, next, previous,
    results}; ``build`` turns the page's rows into documents."""
    query = s.validated(s.PageQuery, request.query_params)
    page, size = query["page"], query.get("page_size") or settings.API_PAGE_SIZE
    count = queryset.count()
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise NotFound(
            f"page {page} does not exist: {count} item(s) make {pages} page(s) of {size}",
            code="page_not_found",
        )
    rows = list(queryset[(page - 1) * size : page * size])

    def link(number: int) -> str | None:
        if not 1 <= number <= pages:
            return None
        params: QueryDict = request.query_params.copy()
        params["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")

    return {
        "count": count,
        "page": page,
        "pages": pages,
        "next": link(page + 1),
        "previous": link(page - 1),
        "results": build(rows),
    }


# --- collections -----------------------------------------------------------------------------


class CollectionList(APIView):
    @extend_schema(
        operation_id="collections_list",
        tags=["collections"],
        summary="Collections",
        parameters=[s.PageQuery],
        responses={200: s.CollectionPage, **errors(400, 404, 429)},
    )
    def get(self, request: Request) -> Response:
        def build(rows: list[Collection]) -> list[dict[str, Any]]:
            counts = status_counts([c.pk for c in rows])
            return [collection_document(c, counts[c.pk]) for c in rows]

        return conditional(request, paginate(request, Collection.objects.order_by("slug"), build))


class CollectionDetail(APIView):
    @extend_schema(
        operation_id="collections_retrieve",
        tags=["collections"],
        summary="A collection, with its rarity table",
        responses={200: s.CollectionSerializer, **errors(404, 429)},
    )
    def get(self, request: Request, slug: str) -> Response:
        collection = get_collection(slug)
        counts = status_counts([collection.pk])[collection.pk]
        return conditional(request, collection_document(collection, counts))


class CollectionRarity(APIView):
    @extend_schema(
        operation_id="collections_rarity",
        tags=["collections"],
        summary="A collection's rarity table with the configured probabilities",
        responses={200: s.RarityTableSerializer, **errors(404, 429)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return conditional(request, rarity_document(get_collection(slug)))


# --- tokens ----------------------------------------------------------------------------------


TOKEN_LIST_RESPONSES = {200: s.TokenPage, **errors(400, 404, 429)}


def list_tokens(request: Request, slug: str | None, query: dict[str, Any]) -> Response:
    tokens = Token.objects.select_related("collection").order_by("collection_id", "token_id")
    if slug:
        tokens = tokens.filter(collection=get_collection(slug))
    if "status" in query:
        tokens = tokens.filter(status__in=query["status"])
    if "owner" in query:
        tokens = tokens.filter(owner__iexact=query["owner"])

    def build(rows: list[Token]) -> list[dict[str, Any]]:
        return [token_document(t, detail=False) for t in rows]

    return conditional(request, paginate(request, tokens, build))


class TokenList(APIView):
    @extend_schema(
        operation_id="tokens_list",
        tags=["tokens"],
        summary="Tokens of every collection, filtered by status, owner and collection",
        parameters=[s.TokenQuery],
        responses=TOKEN_LIST_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        query = s.validated(s.TokenQuery, request.query_params)
        return list_tokens(request, query.get("collection"), query)


class CollectionTokenList(APIView):
    @extend_schema(
        operation_id="collection_tokens_list",
        tags=["tokens"],
        summary="A collection's tokens, filtered by status and owner",
        parameters=[s.CollectionTokenQuery],
        responses=TOKEN_LIST_RESPONSES,
    )
    def get(self, request: Request, slug: str) -> Response:
        return list_tokens(request, slug, s.validated(s.CollectionTokenQuery, request.query_params))


def token_version(
    *, pk: int | None = None, slug: str | None = None, token_id: int | None = None
) -> tuple[Any, ...] | None:
    """What a token's document is made of, in one cheap query: its row, whose ``updated_at``
    moves with every change (generation.models.TokenQuerySet), and its newest event. (The
    collection's part of the document, its contract and rarity table, is frozen before the
    first mint.) The token by ``pk``, or by ``slug`` and ``token_id``; ``None`` when none is.

    Plain SQL: every poll of every collector runs it, and building the same query with the
    ORM cost more CPU than the rest of a 304 answer together (``make bench-load``)."""
    token, event = Token._meta.db_table, TokenEvent._meta.db_table
    collection = Collection._meta.db_table
    if pk is not None:
        where, params = f"{token}.id = %s", [pk]
    else:
        where = (
            f"{token}.token_id = %s AND {token}.collection_id = "
            f"(SELECT id FROM {collection} WHERE slug = %s)"
        )
        params = [token_id, slug]
    sql = (
        f"SELECT {token}.id, {token}.updated_at, (SELECT MAX(id) FROM {event} "
        f"WHERE {event}.token_id = {token}.id) FROM {token} WHERE {where}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def version_etag(version: tuple[Any, ...]) -> str:
    """The token document's ETag, from its version rather than its bytes: a client polling
    with it is answered 304 after one small query, without the document being built. The
    gateway URL is part of it because the document's links are."""
    key = f"{version!r}|{settings.IPFS_GATEWAY_URL}".encode()
    return '"v' + hashlib.sha256(key).hexdigest()[:31] + '"'


TOKEN_DETAIL_RESPONSES = {
    200: s.TokenDetailSerializer,
    304: OpenApiResponse(description="not modified (or nothing changed while waiting)"),
    503: STREAMS_BUSY,
    **errors(400, 404, 429),
}
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False
)


class CollectionTokenDetail(APIView):
    """A token's document; ``?wait=`` turns it into a long poll."""

    query_class: type[s.TokenDetailQuery] = s.TokenDetailQuery

    @extend_schema(
        operation_id="collection_tokens_retrieve",
        tags=["tokens"],
        summary="A token: status, traits, stage history; long poll with ?wait=",
        parameters=[s.TokenDetailQuery, IF_NONE_MATCH],
        responses=TOKEN_DETAIL_RESPONSES,
    )
    def get(self, request: Request, slug: str, token_id: int) -> Response:
        return self.answer(request, slug, token_id)

    def answer(self, request: Request, slug: str | None, token_id: int) -> Response:
        query = s.validated(self.query_class, request.query_params)
        slug = slug or _default_slug(query)
        # The version is read before the document: a change in between gives the client a
        # newer document under an older ETag (its next poll gets a 200, harmless), never the
        # reverse (an older document under a newer ETag would get 304s until the next change).
        version = None
        if token_id <= MAX_DB_INT:
            version = token_version(slug=slug, token_id=token_id)
        if version is not None:
            etag = version_etag(version)
            if not query["wait"] and _etag_matches(request.headers.get("If-None-Match", ""), etag):
                return Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
        token = get_token(slug, token_id)
        if version is None:  # it appeared after the version was read
            version = token_version(pk=token.pk)
            etag = version_etag(version)
        doc = token_document(token)
        since = query.get("since") or request.headers.get("If-None-Match", "")
        if query["wait"] and since and (since == token.status or _etag_matches(since, etag)):
            place = holds.take(request, lease=query["wait"] + holds.LEASE_SECONDS)
            try:
                doc, etag = self._wait(token, since, etag, query["wait"])
            finally:
                place.release()
            if doc is None:
                headers = {"ETag": etag, "Cache-Control": "no-cache"}
                return Response(status=304, headers=headers)
        return conditional(request, doc, etag)

    def _wait(
        self, token: Token, since: str, etag: str, seconds: int
    ) -> tuple[dict[str, Any] | None, str]:
        """Wait for the token to move past ``since``: woken by its status changes
        (mintsite/notifier.py), reading the database only then and every
        ``API_RECHECK_SECONDS``."""
        deadline = time.monotonic() + seconds
        with watching(token.pk) as changed:
            seen = token_version(pk=token.pk)  # after watching: no change falls in between
            while (left := deadline - time.monotonic()) > 0:
                changed.wait(min(left, settings.API_RECHECK_SECONDS))
                changed.clear()
                now = token_version(pk=token.pk)
                if now == seen:
                    continue
                seen = now
                answer = self._moved(token, since, etag, now)
                if answer is not None:
                    return answer
        answer = self._moved(token, since, etag, token_version(pk=token.pk))
        return answer if answer is not None else (None, etag)

    def _moved(
        self, token: Token, since: str, etag: str, version: tuple[Any, ...] | None
    ) -> tuple[dict[str, Any], str] | None:
        """The new document and ETag if the token moved past what the client asked about."""
        if version is None or version_etag(version) == etag:
            return None
        token.refresh_from_db()
        if since == token.status:
            return None  # it moved, but not past the status the client waits on
        return token_document(token), version_etag(version)


class TokenDetail(CollectionTokenDetail):
    """``/api/tokens/<id>/``: the only collection's token, or that of ``?collection=``."""

    query_class = s.TokenDetailByIdQuery

    @extend_schema(
        operation_id="tokens_retrieve",
        tags=["tokens"],
        summary="A token of the only collection (or of ?collection=); long poll with ?wait=",
        parameters=[s.TokenDetailByIdQuery, IF_NONE_MATCH],
        responses=TOKEN_DETAIL_RESPONSES,
    )
    def get(self, request: Request, token_id: int) -> Response:  # type: ignore[override]
        return self.answer(request, None, token_id)


class TokenEvents(APIView):
    @extend_schema(
        operation_id="tokens_events",
        tags=["tokens"],
        summary="A token's stage history (status, detail, at), oldest first",
        responses={200: s.TokenEventSerializer(many=True), **errors(404, 429)},
    )
    def get(self, request: Request, slug: str, token_id: int) -> Response:
        token = get_token(slug, token_id)
        return conditional(request, [event_document(e) for e in token.events.all()])


def metadata_bytes(token: Token) -> bytes:
    """The published metadata, rebuilt from the stored record and checked against the sha256
    the contract holds (the local IPFS store is read when the rebuild does not match)."""
    data = canonical_json(build_metadata(token, token.image_cid))
    if hashlib.sha256(data).hexdigest() == token.metadata_sha256:
        return data
    from ipfs.errors import IpfsError
    from ipfs.store import LocalStore

    try:
        stored = LocalStore(settings.IPFS_STORE_DIR).get(token.metadata_cid)
    except IpfsError:
        stored = b""
    if hashlib.sha256(stored).hexdigest() == token.metadata_sha256:
        return stored
    raise ApiError(
        f"the metadata of token {token.token_id} cannot be reproduced: nothing here hashes to "
        f"its published sha256 {token.metadata_sha256}; read it from {token.token_uri}",
        code="metadata_unavailable",
        status=503,
    )


class TokenProvenance(APIView):
    @extend_schema(
        operation_id="tokens_provenance",
        tags=["tokens"],
        summary="The provenance object of a published token's metadata",
        responses={
            200: s.ProvenanceSerializer,
            503: OpenApiResponse(s.ErrorSerializer, description="`metadata_unavailable`"),
            **errors(404, 429),
        },
    )
    def get(self, request: Request, slug: str, token_id: int) -> Response:
        token = get_token(slug, token_id)
        if token.status not in PUBLISHED:
            raise NotFound(
                f"token {token_id} of {slug} is {token.status}: its provenance is published "
                "with its metadata",
                code="provenance_not_published",
            )
        metadata = json.loads(metadata_bytes(token))
        return conditional(
            request,
            {
                "collection": slug,
                "token_id": token.token_id,
                "token_uri": token.token_uri,
                "metadata_url": f"{settings.IPFS_GATEWAY_URL}/{token.metadata_cid}",
                "metadata_sha256": token.metadata_sha256,
                "provenance": metadata["provenance"],
            },
        )


class EventStreamRenderer(BaseRenderer):
    """``text/event-stream``; used as such only for errors before a stream starts."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        return sse("error", data).encode()


SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["token", "end", "error"]},
        "data": {"type": "string", "description": "JSON: the token document, or {status}"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def token_stream(token: Token, last_event: int, place: holds.Place) -> Iterator[str]:
    """The token's document now, then on each new stage, until a terminal status or the
    stream's lifetime (``API_STREAM_MAX_SECONDS``); comment lines keep proxies from timing out.
    It waits for the token's status changes (mintsite/notifier.py) and reads the database only
    when told of one, and every ``API_RECHECK_SECONDS`` in case a notice was lost."""
    with watching(token.pk) as changed:
        began = time.monotonic()
        deadline = began + settings.API_STREAM_MAX_SECONDS
        heartbeat = began + settings.API_HEARTBEAT_SECONDS
        events = list(token.events.all())
        if events:
            last_event = max(last_event, events[-1].pk)
        yield "retry: 2000\n\n"
        yield sse("token", token_document(token, events=events), last_event or None)
        recheck = time.monotonic() + settings.API_RECHECK_SECONDS
        while token.status not in TERMINAL:
            now = time.monotonic()
            if now >= deadline:
                yield ": the stream's lifetime is over; reconnect to go on\n\n"
                return
            # (woken a third of a lease at the latest, to renew the client's place)
            changed.wait(min(deadline, heartbeat, recheck, now + holds.LEASE_SECONDS / 3) - now)
            place.renew()
            now = time.monotonic()
            if changed.is_set() or now >= recheck:
                changed.clear()
                recheck = now + settings.API_RECHECK_SECONDS
                newer = TokenEvent.objects.filter(token_id=token.pk, pk__gt=last_event).aggregate(
                    last=Max("pk")
                )["last"]
                if newer is not None:
                    last_event = newer
                    token.refresh_from_db()
                    yield sse("token", token_document(token), last_event)
                    continue
            if now >= heartbeat:
                heartbeat = now + settings.API_HEARTBEAT_SECONDS
                yield ": keep-alive\n\n"
        yield sse("end", {"status": token.status}, last_event or None)


class TokenStream(APIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="tokens_stream",
        tags=["tokens"],
        summary="Server-Sent Events: the token document on each stage, until a final state",
        description="Events: `token` (the document, `id` = its last stage event), `end` "
        "(a terminal status: FINAL, FAILED, NEEDS_REVIEW, REORGED); comment lines as "
        "heartbeats. The stream closes after API_STREAM_MAX_SECONDS; reconnect with "
        "Last-Event-ID (EventSource does). One client holds at most "
        "API_MAX_STREAMS_PER_CLIENT streams and long polls at once (429 `too_many_streams`).",
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="The id of the last event received; anything else starts afresh",
            )
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT, description="One event per stage (see the description)"
            ),
            503: STREAMS_BUSY,
            **errors(404, 429),
        },
    )
    def get(self, request: Request, slug: str, token_id: int) -> StreamingHttpResponse:
        token = get_token(slug, token_id)
        raw = request.headers.get("Last-Event-ID", "").strip()
        # ASCII digits only: str.isdigit() is also true of "²", which int() refuses
        last_event = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0
        # a settled token's stream ends at once: it holds no place
        place = holds.take(request) if token.status not in TERMINAL else holds.unheld()
        response = StreamingHttpResponse(
            holds.Holding(token_stream(token, last_event, place), place),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event through at once
        return response


class TokenRequeue(APIView):
    permission_classes = [CollectionKeyRequired]

    @extend_schema(
        operation_id="tokens_requeue",
        tags=["tokens"],
        summary="Send a FAILED or NEEDS_REVIEW token back through the stage that stopped it",
        request=None,
        auth=KEY_AUTH,
        responses={
            202: s.RequeueResponseSerializer,
            503: OpenApiResponse(s.ErrorSerializer, description="`broker_unavailable`"),
            **errors(401, 403, 404, 409, 429),
        },
    )
    def post(self, request: Request, slug: str, token_id: int) -> Response:
        token = get_token(slug, token_id)
        try:
            done = requeue(token.pk, by=f"API key {request.auth.prefix}")
        except RequeueError as exc:
            raise ApiError(str(exc), code=exc.code, status=exc.http_status) from exc
        token.refresh_from_db()
        return Response(
            {
                "requeued": {
                    "previous_status": done.previous_status,
                    "status": done.status,
                    "stage": done.stage,
                    "actor": done.message.actor_name,
                },
                "token": token_document(token),
            },
            status=202,
        )


# --- webhooks --------------------------------------------------------------------------------


def get_subscription(slug: str, pk: int) -> WebhookSubscription:
    subscription = (
        WebhookSubscription.objects.filter(pk=pk, collection__slug=slug).first()
        if pk <= MAX_DB_INT
        else None
    )
    if subscription is None:
        raise NotFound(f"no webhook subscription {pk} in {slug}", code="webhook_not_found")
    return subscription


class WebhookList(APIView):
    permission_classes = [CollectionKeyRequired]

    @extend_schema(
        operation_id="webhooks_list",
        tags=["webhooks"],
        summary="The collection's webhook subscriptions",
        parameters=[s.PageQuery],
        auth=KEY_AUTH,
        responses={200: s.WebhookSubscriptionPage, **errors(400, 401, 403, 404, 429)},
    )
    def get(self, request: Request, slug: str) -> Response:
        rows = WebhookSubscription.objects.filter(collection__slug=slug).order_by("pk")
        page = paginate(request, rows, lambda r: s.WebhookSubscriptionSerializer(r, many=True).data)
        return Response(page)

    @extend_schema(
        operation_id="webhooks_create",
        tags=["webhooks"],
        summary="Subscribe an endpoint to some of the collection's token events",
        description="The response carries the subscription's `secret`, once: keep it to "
        "verify each delivery's signature: the Mint-Signature header, or the Standard Webhooks "
        "headers of a `standard` subscription (docs/webhooks.md).",
        request=s.WebhookSubscriptionSerializer,
        auth=KEY_AUTH,
        responses={
            201: s.WebhookSubscriptionCreatedSerializer,
            **errors(400, 401, 403, 404, 429),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        serializer = s.WebhookSubscriptionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        collection = request.auth.collection
        with transaction.atomic():
            # the collection's row, locked, makes concurrent creations count one after another
            Collection.objects.select_for_update().filter(pk=collection.pk).first()
            problem = WebhookSubscription.limit_problem(collection.pk)
            if problem:
                raise InvalidRequest(problem, code="too_many_subscriptions")
            subscription = serializer.save(collection=collection)
        return Response(s.WebhookSubscriptionCreatedSerializer(subscription).data, status=201)


class WebhookDetail(APIView):
    permission_classes = [CollectionKeyRequired]

    @extend_schema(
        operation_id="webhooks_retrieve",
        tags=["webhooks"],
        summary="A webhook subscription",
        auth=KEY_AUTH,
        responses={200: s.WebhookSubscriptionSerializer, **errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(s.WebhookSubscriptionSerializer(get_subscription(slug, pk)).data)

    def _update(self, request: Request, slug: str, pk: int, partial: bool) -> Response:
        subscription = get_subscription(slug, pk)
        serializer = s.WebhookSubscriptionSerializer(
            subscription, data=request.data, partial=partial
        )
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    @extend_schema(
        operation_id="webhooks_update",
        tags=["webhooks"],
        summary="Replace a webhook subscription's url, event types, description, active flag",
        request=s.WebhookSubscriptionSerializer,
        auth=KEY_AUTH,
        responses={200: s.WebhookSubscriptionSerializer, **errors(400, 401, 403, 404, 429)},
    )
    def put(self, request: Request, slug: str, pk: int) -> Response:
        return self._update(request, slug, pk, partial=False)

    @extend_schema(
        operation_id="webhooks_partial_update",
        tags=["webhooks"],
        summary="Change some of a webhook subscription's fields",
        request=s.WebhookSubscriptionSerializer,
        auth=KEY_AUTH,
        responses={200: s.WebhookSubscriptionSerializer, **errors(400, 401, 403, 404, 429)},
    )
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        return self._update(request, slug, pk, partial=True)

    @extend_schema(
        operation_id="webhooks_destroy",
        tags=["webhooks"],
        summary="Delete a webhook subscription (and its delivery log)",
        auth=KEY_AUTH,
        responses={204: None, **errors(401, 403, 404, 429)},
    )
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        get_subscription(slug, pk).delete()
        return Response(status=204)


class WebhookDeliveries(APIView):
    permission_classes = [CollectionKeyRequired]

    @extend_schema(
        operation_id="webhooks_deliveries",
        tags=["webhooks"],
        summary="A subscription's deliveries, newest first, with the last try's status code, "
        "duration and failure reason (never the receiver's body)",
        parameters=[s.DeliveryQuery],
        auth=KEY_AUTH,
        responses={200: s.WebhookDeliveryPage, **errors(400, 401, 403, 404, 429)},
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        query = s.validated(s.DeliveryQuery, request.query_params)
        rows = get_subscription(slug, pk).deliveries.order_by("-created_at", "-pk")
        if "status" in query:
            rows = rows.filter(status=query["status"])
        page = paginate(request, rows, lambda r: s.WebhookDeliverySerializer(r, many=True).data)
        return Response(page)
