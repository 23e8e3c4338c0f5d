"""Signed tree heads: what is signed (the canonical JSON of the log's name, tree size, root
hash and time) and the Ed25519 signature over it, made and checked with `cryptography`.
No I/O: keys come in as bytes."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.domain import canonical_json

LOG_NAME = "bo-audit"


class SigningKeyInvalid(ValueError):
    """The configured signing or public key is not an Ed25519 key."""


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    root_hash: bytes
    timestamp: datetime

    def signed_bytes(self) -> bytes:
        return canonical_json(
            {
                "log": LOG_NAME,
                "tree_size": self.tree_size,
                "root_hash": self.root_hash.hex(),
                "timestamp": self.timestamp.isoformat(),
            }
        )


@dataclass(frozen=True)
class SignedTreeHead:
    head: TreeHead
    key_id: str
    signature: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "log": LOG_NAME,
            "tree_size": self.head.tree_size,
            "root_hash": self.head.root_hash.hex(),
            "timestamp": self.head.timestamp.isoformat(),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, value: dict[str, object]) -> SignedTreeHead:
        return cls(
            TreeHead(
                tree_size=int(str(value["tree_size"])),
                root_hash=bytes.fromhex(str(value["root_hash"])),
                timestamp=datetime.fromisoformat(str(value["timestamp"])),
            ),
            key_id=str(value["key_id"]),
            signature=base64.b64decode(str(value["signature"]), validate=True),
        )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key: names the key a head was signed with."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_private_key(material: bytes) -> Ed25519PrivateKey:
    """A PKCS#8 PEM private key, or the 32-byte seed in base64."""
    try:
        if material.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(material, password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(material.strip(), validate=True)
            )
    except ValueError as error:
        raise SigningKeyInvalid(f"not an Ed25519 private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyInvalid(f"not an Ed25519 private key: {type(key).__name__}")
    return key


def load_public_key(material: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(material)
    except ValueError as error:
        raise SigningKeyInvalid(f"not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyInvalid(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def sign(head: TreeHead, key: Ed25519PrivateKey) -> SignedTreeHead:
    return SignedTreeHead(head, key_id(key.public_key()), key.sign(head.signed_bytes()))


def signature_valid(signed: SignedTreeHead, key: Ed25519PublicKey) -> bool:
    if signed.key_id != key_id(key):
        return False
    try:
        key.verify(signed.signature, signed.head.signed_bytes())
    except InvalidSignature:
        return False
    return True
