"""Audit settings (AUDIT_ prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from bo_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore")

    service_name: str = "audit"
    port: int = 8004
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/bo_audit"
    # The database role the service works as (revision 0003 creates it: INSERT and SELECT
    # on the records, nothing more). A connection that logs in as another user switches to
    # it (SET ROLE); empty: stay the login user (when that user is already the role).
    database_role: str = "audit_writer"
    # The Ed25519 key tree heads are signed with: a PKCS#8 PEM, or the 32-byte seed in
    # base64. Production sets it (from a secret store). Without it, the key is read from
    # signing_key_file, and a development key is generated there on first start.
    signing_key: SecretStr | None = None
    signing_key_file: Path = Path("var/audit-signing-key.pem")
    # How often a new tree head is signed and published on audit.events (only when records
    # other than published tree heads were appended since the last one).
    tree_head_interval_s: float = Field(default=5.0, gt=0)
    # The most records one export holds (each with its inclusion proof).
    export_max_records: int = Field(default=10_000, ge=1)
