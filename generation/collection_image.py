"""The pictures a marketplace shows on a collection's page (ERC-7572 contract metadata).

The collection image is the one a manager chose (``Collection.image``), else the collection's
first style image (a picture of the very style its tokens are held to), else a card rendered
here: the collection's name on a colour drawn from its slug. The banner is only ever chosen.
Each is pinned to IPFS like a token's image when the freeze is prepared (chain/freeze.py).
"""

from __future__ import annotations

import hashlib
import io
import textwrap
from dataclasses import dataclass

from generation.models import Collection

CARD_SIZE = 512  # px, square: marketplaces show the collection image in a square or a circle


@dataclass(frozen=True)
class Picture:
    data: bytes
    filename: str  # the pin's label
    source: str  # "chosen", "style image" or "card", for the log


def collection_image(collection: Collection) -> Picture:
    """The collection image's bytes: chosen, else the first style image, else a name card."""
    chosen, _banner = collection.marketplace_image_paths()
    if chosen is not None:
        return Picture(chosen.read_bytes(), f"{collection.slug}-image{chosen.suffix}", "chosen")
    styles = collection.style_image_paths()
    if styles:
        first = styles[0]
        return Picture(first.read_bytes(), f"{collection.slug}-image{first.suffix}", "style image")
    return Picture(
        name_card(collection.name, collection.slug), f"{collection.slug}-image.png", "card"
    )


def banner_image(collection: Collection) -> Picture | None:
    """The chosen banner's bytes, or None (the contract metadata then has no banner)."""
    _chosen, banner = collection.marketplace_image_paths()
    if banner is None:
        return None
    return Picture(banner.read_bytes(), f"{collection.slug}-banner{banner.suffix}", "chosen")


def name_card(name: str, slug: str) -> bytes:
    """A PNG card: ``name`` in white on a dark colour taken from sha256(``slug``).

    The same name and slug give the same bytes on the same Pillow (no timestamp in the file).
    """
    from PIL import Image, ImageDraw, ImageFont

    r, g, b = hashlib.sha256(slug.encode()).digest()[:3]
    background = (r // 3, g // 3, b // 3)  # dark enough for white text
    image = Image.new("RGB", (CARD_SIZE, CARD_SIZE), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    lines = textwrap.wrap(name, width=20, max_lines=6, placeholder="…") or [slug]
    text = "\n".join(lines)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    origin = ((CARD_SIZE - (right - left)) / 2 - left, (CARD_SIZE - (bottom - top)) / 2 - top)
    draw.multiline_text(origin, text, font=font, fill=(255, 255, 255), align="center")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
