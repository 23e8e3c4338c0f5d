"""The Merkle tree of RFC 9162 (Certificate Transparency v2, section 2.1) over the audit
records in sequence order: leaf and node hashes, the compact frontier that appending needs,
inclusion and consistency proofs built from stored complete subtrees, and their
verification. No I/O.

A node is named (level, index): it is the complete subtree of 2**level leaves starting at
leaf index * 2**level. Every complete subtree is stored once (about two nodes per record),
so a proof for any record of any tree size needs only O(log n) stored nodes, whatever the
size of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)


class ProofRequestInvalid(ValueError):
    """A proof was asked for a leaf or tree sizes that do not exist in the log."""


class NodeMissing(LookupError):
    """A stored node a proof needs is not there (the node table is incomplete)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than size (size > 1): RFC 9162's k."""
    return 1 << ((size - 1).bit_length() - 1)


@dataclass(frozen=True)
class Frontier:
    """The tree of `size` leaves as its complete subtrees, largest (leftmost) first: one per
    set bit of size. Enough to append and to compute the root, never more than 64 hashes."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root


@dataclass(frozen=True)
class Appended:
    frontier: Frontier
    # Every complete subtree the appended leaves finished, leaves (level 0) included.
    nodes: list[tuple[int, int, bytes]]


def append(frontier: Frontier, leaf_hashes: Iterable[bytes]) -> Appended:
    """Append leaves (their leaf hashes) to the tree; returns the new frontier and the new
    complete subtrees to store."""
    stack = list(frontier.hashes)
    size = frontier.size
    nodes: list[tuple[int, int, bytes]] = []
    for hashed in leaf_hashes:
        index = size
        nodes.append((0, index, hashed))
        current, level, carry = hashed, 0, index
        # Each trailing one bit of the new leaf's index closes a complete subtree.
        while carry & 1:
            current = node_hash(stack.pop(), current)
            level += 1
            carry >>= 1
            nodes.append((level, index >> level, current))
        stack.append(current)
        size += 1
    return Appended(Frontier(size, tuple(stack)), nodes)


def subtree_nodes(start: int, end: int) -> list[NodeId]:
    """The stored complete subtrees whose combination (as MTH does) gives the hash of the
    leaves [start, end), where start is aligned as in RFC 9162's recursion."""
    size = end - start
    if size <= 0:
        raise ProofRequestInvalid(f"empty range [{start}, {end})")
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        return [(level, start >> level)]
    k = _split(size)
    return subtree_nodes(start, start + k) + subtree_nodes(start + k, end)


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[start:end]) from stored complete subtrees."""
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        node = (level, start >> level)
        if node not in nodes:
            raise NodeMissing(f"node {node} is not stored")
        return nodes[node]
    k = _split(size)
    return node_hash(range_hash(start, start + k, nodes), range_hash(start + k, end, nodes))


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ProofRequestInvalid(f"leaf {index} is not in a tree of {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start = start + k
    return list(reversed(ranges))


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose hashes form PROOF(first, D[0:second]) (RFC 9162 2.1.4.1)."""
    if not 0 < first <= second:
        raise ProofRequestInvalid(f"no consistency proof from {first} to {second}")
    ranges: list[Range] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, start + k, whole)
            ranges.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            ranges.append((start, start + k))

    subproof(first, 0, second, True)
    return ranges


def nodes_for(ranges: Iterable[Range]) -> set[NodeId]:
    needed: set[NodeId] = set()
    for start, end in ranges:
        needed.update(subtree_nodes(start, end))
    return needed


def hashes_of(ranges: Sequence[Range], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    return [range_hash(start, end, nodes) for start, end in ranges]


def root_nodes(size: int) -> list[NodeId]:
    """The complete subtrees of a tree of `size` leaves (its frontier), largest first."""
    return subtree_nodes(0, size) if size else []


def frontier_of(size: int, nodes: Mapping[NodeId, bytes]) -> Frontier:
    return Frontier(size, tuple(nodes[node] for node in root_nodes(size)))


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root an inclusion proof leads to, or None if it cannot be a
    proof for that leaf index and tree size."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    return root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 and second > 0:
        return not proof  # the empty tree is a prefix of every tree
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: first_root is the proof's first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
