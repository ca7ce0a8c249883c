"""The Django admin of the whole product (the web tier): Django's autodiscovery imports this
package, and each module registers its models.

- collections: a collection's config, rarity table, freeze, pause and resume;
- tokens (+ token_views): tokens, their images and history, and the review actions;
- integrations: API keys, webhook subscriptions and deliveries;
- chain: chains, cursors, wallets and transactions, read-only for operators;
- pins: every pinned CID and which IPFS target holds it, and the pin check on a selection;
- allowlists: upload an allowlist CSV, its Merkle root, pinned tree and each address's proof;
- sales: sale phases, each collection's sale page and the on-chain actions it queues;
- permissions: who may see and run what.
"""

from mintsite.admin import allowlists, chain, collections, integrations, pins, sales, tokens

__all__ = ["allowlists", "chain", "collections", "integrations", "pins", "sales", "tokens"]
