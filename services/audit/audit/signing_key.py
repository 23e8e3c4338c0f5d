"""Where the tree-head signing key comes from: the configured key, else the key file,
generated there on first start for development."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import domain_signing
from audit.config import Settings
from bo_common.logs import get_logger

log = get_logger(__name__)


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    if settings.signing_key is not None:
        return domain_signing.load_private_key(
            settings.signing_key.get_secret_value().encode("utf-8")
        )
    path = settings.signing_key_file
    if not path.exists():
        _generate(path)
    return domain_signing.load_private_key(path.read_bytes())


def _generate(path: Path) -> None:
    """A development key, written once: O_EXCL, so that two processes starting together
    (replicas, or test stacks sharing var/) end up with the one key the first wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = domain_signing.private_key_pem(Ed25519PrivateKey.generate())
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    log.warning("audit_signing_key_generated", path=str(path))
