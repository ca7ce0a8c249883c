"""A system check that names environment variables the project no longer reads.

A variable dropped in a release would otherwise be ignored without a word, and the operator who
tuned it would never learn that its meaning moved. ``manage.py check --deploy --fail-level
WARNING`` (the web unit's ``ExecStartPre`` in docs/deploy.md) stops on these.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.checks import Warning

# variable -> what replaced it
RETIRED = {
    "API_POLL_INTERVAL": (
        "streams and long polls no longer poll the database: they are woken by Redis pub/sub "
        "and re-read the token every API_RECHECK_SECONDS (docs/api.md); set that instead"
    ),
}


def retired_variables(**kwargs: Any) -> list[Warning]:
    return [
        Warning(f"{name} is set but no longer read: {instead}", id="mintsite.W001", obj=name)
        for name, instead in RETIRED.items()
        if name in os.environ
    ]
