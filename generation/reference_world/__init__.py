"""The reference world: a synthetic image domain whose traits are known, and its pixel oracle.

``world`` draws a token's image from its traits and a seed and holds the world's rarity table,
prompt template and captions; ``oracle`` reads the traits back from pixels alone, independently
of the CLIP gate, so the gate's accuracy can be measured. docs/reference-world.md describes both.
"""
