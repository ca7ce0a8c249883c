"""The seed scheme: nobody can know a token's seed when its mint is sent."""

from __future__ import annotations

from eth_utils.crypto import keccak


def derive_seed(mint_block_hash: bytes, token_id: int) -> bytes:
    """``keccak256(abi.encodePacked(bytes32 mintBlockHash, uint256 tokenId))``.

    The contract computes the same value on-chain in ``commitSeeds``; the listener derives it
    off-chain too and refuses to go on if the two differ.
    """
    if len(mint_block_hash) != 32:
        raise ValueError(f"a block hash has 32 bytes, got {len(mint_block_hash)}")
    if token_id < 0 or token_id >= 2**256:
        raise ValueError(f"token id {token_id} does not fit a uint256")
    return keccak(mint_block_hash + token_id.to_bytes(32, "big"))
