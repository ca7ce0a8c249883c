"""Where a collection's model files may be: inside the folders the operator allows
(``MODEL_ROOTS``; docs/admin.md, README).

A manager names the diffusion model, its config folder, the CLIP model and the reference style
images by path on the render workers. Those paths are confined to the roots: a relative path is
taken from the first root, and a path that, once resolved (``..`` and symbolic links followed),
is not inside a root is refused with one message whether or not anything is there. So the admin
never tells a manager what exists elsewhere on the server, and the workers never load a file
(``open_clip`` and ``torch`` may unpickle what they load) from anywhere else.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def model_roots() -> list[Path]:
    """The allowed folders, resolved (``settings.MODEL_ROOTS``; the first takes relative
    paths)."""
    return [Path(root).resolve() for root in settings.MODEL_ROOTS]


def under_first_root(path: str) -> Path:
    """``path`` as given when absolute, else under the first root (not resolved)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(settings.MODEL_ROOTS[0]) / candidate


def is_confined(path: str) -> bool:
    """Whether ``path``, resolved, lies inside one of the roots."""
    try:
        resolved = under_first_root(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte: not usable
        return False
    return any(resolved.is_relative_to(root) for root in model_roots())


def outside_message(path: str) -> str:
    """The one answer for a path outside the roots: it names the path as given and the roots,
    nothing about what is there."""
    roots = ", ".join(str(root) for root in settings.MODEL_ROOTS)
    return (
        f"{path!r} is outside the folders models may be loaded from ({roots}; the operator's "
        "MODEL_ROOTS): give a path inside them, or one relative to the first"
    )
