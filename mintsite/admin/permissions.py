"""Who may see and run what in the admin, in one place.

A superuser sees every collection; any other staff user sees, changes and runs only the
collections that list them in ``managers``, and only those collections' tokens, events, API keys
and webhooks (querysets, object permissions, list filters and the image view all go through
:func:`managed_collections`). Being in ``managers`` is the whole grant: a manager
needs no model permissions of Django's own, and for anyone but a superuser Django's model
permissions grant nothing here (docs/admin.md lists what a manager may do with each kind of row).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest

from generation.models import Collection


def managed_collections(user: Any) -> QuerySet[Collection]:
    """The collections ``user`` may see and run in the admin."""
    if not (user.is_active and user.is_staff):
        return Collection.objects.none()
    if user.is_superuser:
        return Collection.objects.all()
    return Collection.objects.filter(managers=user)


def manages(user: Any, collection_pk: int | None = None) -> bool:
    """Whether ``user`` manages that collection (any collection when None)."""
    collections = managed_collections(user)
    if collection_pk is not None:
        collections = collections.filter(pk=collection_pk)
    return collections.exists()


def who(request: HttpRequest) -> str:
    """The name a token's history records for the user acting."""
    return request.user.get_username()


class ReadOnly:
    """Rows nobody adds, changes or deletes in the admin: they change only through the
    pipeline, the daemons and the actions that own them (an admin mixin, first in the bases)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
