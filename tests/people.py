"""The admin's personas: staff accounts the tests log in as (conftest.py's ``ada``, ``bob`` and
``root`` fixtures are made with :func:`staff`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def staff(username: str, *, superuser: bool = False) -> User:
    from django.contrib.auth.models import User  # conftest imports this before Django is set up

    # no password (nothing to hash): the tests log in with force_login
    return User.objects.create_user(
        username, f"{username}@example.com", None, is_staff=True, is_superuser=superuser
    )
