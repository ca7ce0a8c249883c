"""Staff-only views the token admin adds (registered by ``TokenAdmin.get_urls``)."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404, HttpRequest, HttpResponse

from generation import pipeline, review
from generation.models import Token


def token_render(request: HttpRequest, model_admin: Any, pk: int, attempt: int) -> HttpResponse:
    """One attempt's image of a token the user may see, as PNG.

    The accepted image is the file the pin stage reads (``pipeline.render_cache_path``); a
    rejected attempt's image is looked up in the render cache by its inputs
    (``review.rejected_image``), which is how a manager sees what the gate refused before
    approving it. 404 for a token outside the user's collections, or an image the cache lacks.
    """
    token = model_admin.get_queryset(request).select_related("collection").filter(pk=pk).first()
    if token is None or not model_admin.has_view_permission(request, token):
        raise Http404("no such token")
    path = pipeline.render_cache_path(token, attempt)
    if path.is_file():
        response: HttpResponse = FileResponse(path.open("rb"), content_type="image/png")
    else:
        image = review.rejected_image(token, attempt) if _was_rejected(token, attempt) else None
        if image is None:
            raise Http404(f"no render of attempt {attempt} of token {token.token_id} in the cache")
        from generation.rendering import png_bytes

        response = HttpResponse(png_bytes(image), content_type="image/png")
    # Renders of an attempt never change; the page is staff-only, so keep it out of shared caches.
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _was_rejected(token: Token, attempt: int) -> bool:
    """Whether ``attempt`` is one the gate rejected (tried, and not the accepted one)."""
    tried = token.attempt + 1 if token.image_sha256 else token.attempt
    return 0 <= attempt < tried and not (token.image_sha256 and attempt == token.attempt)
