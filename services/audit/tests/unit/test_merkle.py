"""The RFC 9162 Merkle tree: the published Certificate Transparency test vectors
(transparency-dev/merkle testonly and proof tests), and, for any tree, proofs built from
stored nodes equal those of RFC 9162's recursive definitions written out here. Pure."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import domain_merkle as merkle

# transparency-dev/merkle testonly/constants.go: LeafInputs and RootHashes (sizes 0..8).
LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# proof/verify_test.go: inclusionProofs (leaf is 1-based there) and consistencyProofs.
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]  # fmt: skip
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


# RFC 9162 2.1.1-2.1.4, written from the definitions, for comparison.
def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def stored_tree(leaves: list[bytes]) -> tuple[merkle.Frontier, dict[merkle.NodeId, bytes]]:
    appended = merkle.append(merkle.Frontier(), [merkle.leaf_hash(leaf) for leaf in leaves])
    return appended.frontier, {(level, index): h for level, index, h in appended.nodes}


def inclusion_proof(index: int, size: int, nodes: dict[merkle.NodeId, bytes]) -> list[bytes]:
    return merkle.hashes_of(merkle.inclusion_ranges(index, size), nodes)


def consistency_proof(first: int, second: int, nodes: dict[merkle.NodeId, bytes]) -> list[bytes]:
    return merkle.hashes_of(merkle.consistency_ranges(first, second), nodes)


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_equal_the_published_vectors_for_every_size(size: int) -> None:
    frontier, nodes = stored_tree(LEAVES[:size])

    assert frontier.root() == ROOTS[size]
    assert merkle.frontier_of(size, nodes).root() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_equal_the_published_vectors(
    index: int, size: int, expected: list[str]
) -> None:
    _, nodes = stored_tree(LEAVES)
    proof = inclusion_proof(index, size, nodes)

    assert [p.hex() for p in proof] == expected
    assert merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[index]), proof, ROOTS[size])


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY)
def test_consistency_proofs_equal_the_published_vectors(
    first: int, second: int, expected: list[str]
) -> None:
    _, nodes = stored_tree(LEAVES)
    proof = consistency_proof(first, second, nodes)

    assert [p.hex() for p in proof] == expected
    assert merkle.verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    leaves = draw(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
    return leaves, draw(st.integers(min_value=0, max_value=len(leaves) - 1))


@given(tree_and_index())
def test_inclusion_proofs_from_stored_nodes_equal_the_rfc_definition(
    case: tuple[list[bytes], int],
) -> None:
    leaves, index = case
    frontier, nodes = stored_tree(leaves)
    proof = inclusion_proof(index, len(leaves), nodes)

    assert frontier.root() == mth(leaves)
    assert proof == path(index, leaves)
    assert merkle.verify_inclusion(
        index, len(leaves), merkle.leaf_hash(leaves[index]), proof, mth(leaves)
    )


@given(tree_and_index(), st.data())
def test_proofs_for_an_older_tree_size_come_from_the_same_stored_nodes(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    size = data.draw(st.integers(min_value=index + 1, max_value=len(leaves)))
    _, nodes = stored_tree(leaves)

    assert inclusion_proof(index, size, nodes) == path(index, leaves[:size])
    assert merkle.frontier_of(size, nodes).root() == mth(leaves[:size])


@given(tree_and_index(), st.data())
def test_consistency_proofs_equal_the_rfc_definition_and_verify(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, _ = case
    second = len(leaves)
    first = data.draw(st.integers(min_value=1, max_value=second))
    _, nodes = stored_tree(leaves)
    proof = consistency_proof(first, second, nodes)

    assert proof == subproof(first, leaves, True)
    assert merkle.verify_consistency(first, second, mth(leaves[:first]), mth(leaves), proof)


@given(tree_and_index(), st.integers(min_value=0, max_value=31), st.data())
def test_a_proof_with_any_changed_bit_or_wrong_index_is_refused(
    case: tuple[list[bytes], int], bit: int, data: st.DataObject
) -> None:
    leaves, index = case
    size = len(leaves)
    _, nodes = stored_tree(leaves)
    proof = inclusion_proof(index, size, nodes)
    leaf = merkle.leaf_hash(leaves[index])
    root = mth(leaves)

    assert not merkle.verify_inclusion(index, size, leaf, [*proof, root], root)
    if proof:
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        changed = list(proof)
        changed[position] = bytes([changed[position][0] ^ (1 << (bit % 8))]) + changed[position][1:]
        assert not merkle.verify_inclusion(index, size, leaf, changed, root)
        other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
        assert not merkle.verify_inclusion(other, size, leaf, proof, root) or (
            leaves[other] == leaves[index] and path(other, leaves) == proof
        )


def test_a_consistency_proof_against_a_different_history_is_refused() -> None:
    _, nodes = stored_tree(LEAVES)
    proof = consistency_proof(3, 8, nodes)
    rewritten = mth([b"rewritten", *LEAVES[1:3]])

    assert merkle.verify_consistency(3, 8, ROOTS[3], ROOTS[8], proof)
    assert not merkle.verify_consistency(3, 8, rewritten, ROOTS[8], proof)
    assert not merkle.verify_consistency(3, 8, ROOTS[3], ROOTS[8], proof[:-1])
    assert not merkle.verify_consistency(8, 3, ROOTS[8], ROOTS[3], proof)


def test_proofs_outside_the_tree_are_refused_by_name() -> None:
    with pytest.raises(merkle.ProofRequestInvalid):
        merkle.inclusion_ranges(8, 8)
    with pytest.raises(merkle.ProofRequestInvalid):
        merkle.consistency_ranges(5, 3)
    with pytest.raises(merkle.ProofRequestInvalid):
        merkle.consistency_ranges(0, 3)


def test_a_missing_stored_node_is_named() -> None:
    _, nodes = stored_tree(LEAVES)
    del nodes[(1, 1)]

    with pytest.raises(merkle.NodeMissing, match=r"\(1, 1\)"):
        inclusion_proof(0, 8, nodes)
