"""The public addresses of this site's pages that published documents link to.

A token's metadata names its page (``external_url``) and the contract metadata the collection's
(``external_link``), both under ``settings.WEB_URL``, the site's public URL. Both documents are
pinned and hashed, so the URL in force when a document is built stays in it.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def collection_url(slug: str) -> str:
    """The collection's mint page."""
    return settings.WEB_URL + reverse("pages:mint", kwargs={"slug": slug})


def token_url(slug: str, token_id: int) -> str:
    """The token's page (image, traits, provenance)."""
    return settings.WEB_URL + reverse("pages:token", kwargs={"slug": slug, "token_id": token_id})
