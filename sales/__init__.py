"""Sales beyond the contract's fixed price (issue 19): allowlists so far.

- merkle: OpenZeppelin's StandardMerkleTree for (address, allowance) leaves, pure;
- allowlist: reading an uploaded CSV of address,allowance, pure;
- models: the allowlists and their entries with proofs;
- building: parse, build the tree, store it, pin its dump to IPFS.

It sits between the web tier and the verifier (docs/architecture.md): the admin and the API
import it; it imports generation (collections) and ipfs (the pinner), never mintsite or chain.
"""
