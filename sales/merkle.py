"""OpenZeppelin's ``StandardMerkleTree`` (``@openzeppelin/merkle-tree`` 1.x) for allowlists whose
leaves are ``["address", "uint256"]``: an address and how many tokens it may mint.

Built exactly as the JS library builds it, so the same entries give the same root, the same
proofs and the same ``dump()``, which ``StandardMerkleTree.load()`` reads back (tests/
test_allowlist.py checks all of it against the library itself):

- a leaf is ``keccak256(keccak256(abi.encode(address, allowance)))``; hashing twice keeps a leaf
  from ever being read as an inner node (OpenZeppelin's ``MerkleProof`` expects exactly this);
- a node is ``keccak256`` of its two children, the smaller first (sorted pairs), so a proof is a
  plain list of siblings with no left/right flags;
- the leaves are sorted by hash and the tree is one array, the root at 0, the children of ``i``
  at ``2i + 1`` and ``2i + 2``, the sorted leaves filling the end from the last slot backwards;
- ``values`` keep the order the entries came in, each with the index of its leaf in the tree.

Pure: no Django, so the contract's tests and the verifier side may use it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

__all__ = [
    "FORMAT",
    "LEAF_ENCODING",
    "MAX_UINT256",
    "AllowlistTree",
    "Leaf",
    "leaf_hash",
    "node_hash",
    "process_proof",
    "verify",
]

FORMAT = "standard-v1"
LEAF_ENCODING = ("address", "uint256")
MAX_UINT256 = 2**256 - 1


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def leaf_hash(address: str, allowance: int) -> bytes:
    """``keccak256(keccak256(abi.encode(address, allowance)))``, as the library hashes a leaf."""
    return keccak(keccak(encode(list(LEAF_ENCODING), [address, allowance])))


def node_hash(a: bytes, b: bytes) -> bytes:
    """The parent of two nodes: ``keccak256`` of the pair, the smaller first."""
    return keccak(a + b if a <= b else b + a)


def process_proof(leaf: bytes, proof: Sequence[str]) -> bytes:
    """The root that ``proof`` climbs to from ``leaf`` (``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        node = node_hash(node, bytes.fromhex(sibling.removeprefix("0x")))
    return node


def verify(root: str, address: str, allowance: int, proof: Sequence[str]) -> bool:
    """Whether ``proof`` shows (address, allowance) is in the tree of ``root``: what the
    contract's ``MerkleProof.verify`` will answer."""
    expected = bytes.fromhex(root.removeprefix("0x"))
    return process_proof(leaf_hash(address, allowance), proof) == expected


@dataclass(frozen=True)
class Leaf:
    """One entry: a checksummed address, its allowance, and where its leaf sits in the tree."""

    address: str
    allowance: int
    tree_index: int


@dataclass(frozen=True)
class AllowlistTree:
    """The tree of an allowlist: ``tree`` holds every node as 0x hex (the root first),
    ``values`` the entries in the order they were given."""

    tree: tuple[str, ...]
    values: tuple[Leaf, ...]

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]]) -> AllowlistTree:
        """The tree of (address, allowance) pairs, as ``StandardMerkleTree.of(values,
        ["address", "uint256"])`` builds it. Each address may appear once: a proof is looked up
        by address. Raises ``ValueError`` for no entries, a bad address or allowance, or an
        address given twice."""
        pairs = [(_address(a), _allowance(n)) for a, n in entries]
        if not pairs:
            raise ValueError("an allowlist needs at least one entry")
        seen: set[str] = set()
        for address, _ in pairs:
            if address in seen:
                raise ValueError(f"{address} is listed more than once")
            seen.add(address)
        hashes = [leaf_hash(address, allowance) for address, allowance in pairs]
        # The library sorts (hash, original index) by hash; every hash differs here (distinct
        # addresses), so the sort's stability never matters.
        order = sorted(range(len(pairs)), key=hashes.__getitem__)
        size = 2 * len(pairs) - 1
        nodes: list[bytes] = [b""] * size
        tree_index = [0] * len(pairs)
        for position, value_index in enumerate(order):
            nodes[size - 1 - position] = hashes[value_index]
            tree_index[value_index] = size - 1 - position
        for i in range(size - 1 - len(pairs), -1, -1):
            nodes[i] = node_hash(nodes[2 * i + 1], nodes[2 * i + 2])
        return cls(
            tree=tuple(_hex(node) for node in nodes),
            values=tuple(
                Leaf(address, allowance, tree_index[i])
                for i, (address, allowance) in enumerate(pairs)
            ),
        )

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> AllowlistTree:
        """A tree from a ``dump()`` (ours or the library's), checked as ``StandardMerkleTree.load``
        checks it: the format, the encoding, every leaf and every inner node."""
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}, expected {FORMAT!r}")
        if list(data.get("leafEncoding") or []) != list(LEAF_ENCODING):
            raise ValueError(f"leaf encoding {data.get('leafEncoding')!r} is not {LEAF_ENCODING}")
        tree = tuple(str(node).lower() for node in data["tree"])
        values = tuple(
            Leaf(_address(v["value"][0]), _allowance(v["value"][1]), int(v["treeIndex"]))
            for v in data["values"]
        )
        loaded = cls(tree=tree, values=values)
        loaded.validate()
        return loaded

    def validate(self) -> None:
        """Raise ``ValueError`` unless every leaf is where its value says and every inner node
        hashes its children."""
        size = len(self.tree)
        if size == 0 or size != 2 * len(self.values) - 1:
            raise ValueError(f"{len(self.values)} values cannot make a tree of {size} nodes")
        nodes = [bytes.fromhex(node.removeprefix("0x")) for node in self.tree]
        if any(len(node) != 32 for node in nodes):
            raise ValueError("every node must be 32 bytes")
        for value in self.values:
            index = value.tree_index
            if not (size // 2 <= index < size) or nodes[index] != leaf_hash(
                value.address, value.allowance
            ):
                raise ValueError(f"the tree does not hold {value.address}'s leaf at {index}")
        for i in range(size // 2):
            if nodes[i] != node_hash(nodes[2 * i + 1], nodes[2 * i + 2]):
                raise ValueError(f"node {i} is not the hash of its children")

    @property
    def root(self) -> str:
        """The root, as 0x and 64 hex digits: what the contract is given."""
        return self.tree[0]

    def __len__(self) -> int:
        return len(self.values)

    def leaf(self, address: str) -> Leaf:
        """The entry of ``address`` (any case); ``KeyError`` when it is not on the list."""
        wanted = _address(address)
        try:
            return self._by_address[wanted]
        except KeyError:
            raise KeyError(f"{wanted} is not on the allowlist") from None

    @cached_property
    def _by_address(self) -> dict[str, Leaf]:
        return {value.address: value for value in self.values}

    def get_proof(self, address: str) -> list[str]:
        """The siblings from the leaf of ``address`` up to the root (``getProof``); ``KeyError``
        when it is not on the list."""
        return self.proof_at(self.leaf(address).tree_index)

    def proofs(self) -> list[list[str]]:
        """Every entry's proof, in the order of ``values``."""
        return [self.proof_at(value.tree_index) for value in self.values]

    def proof_at(self, index: int) -> list[str]:
        proof = []
        while index > 0:
            sibling = index - 1 if index % 2 == 0 else index + 1
            proof.append(self.tree[sibling])
            index = (index - 1) // 2
        return proof

    def dump(self) -> dict[str, Any]:
        """``StandardMerkleTree.dump()``: format, leaf encoding, nodes, and values with their
        tree index. An allowance is written as a decimal string, as the library's own examples
        give uint256 values (a JSON number loses precision past 2**53)."""
        return {
            "format": FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "tree": list(self.tree),
            "values": [
                {"value": [v.address, str(v.allowance)], "treeIndex": v.tree_index}
                for v in self.values
            ],
        }

    def dump_json(self) -> bytes:
        """``JSON.stringify(tree.dump())``, byte for byte: the file pinned to IPFS."""
        return json.dumps(self.dump(), separators=(",", ":"), ensure_ascii=False).encode()


def _address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an address")
    try:
        return to_checksum_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address: expected 0x and 40 hex digits") from None


def _allowance(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a uint256")
    number = int(value)
    if not 0 <= number <= MAX_UINT256:
        raise ValueError(f"{value!r} is not a uint256")
    return number
