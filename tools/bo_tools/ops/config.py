"""Where the ops commands find the cluster: each service's base URL and database, the broker
and the ops key. Defaults match `make run`; environment variables and flags override."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bo_tools.stack import DATABASE_SERVICES, ROOT, SERVICES, Stack

DEV_KEYS_FILE = ROOT / "var" / "dev-keys.json"
# The processes with an HTTP API an operator asks (the CSD simulator is outside the firm).
API_SERVICES = tuple(s.name for s in SERVICES if s.name != "csd_simulator")


class ConfigError(Exception):
    """The ops tool cannot tell where the cluster is or which key to use."""


@dataclass(frozen=True)
class OpsConfig:
    urls: dict[str, str]
    database_urls: dict[str, str]
    bootstrap_servers: str
    ops_key: str
    timeout_s: float = 10.0
    extra: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        if not self.ops_key:
            raise ConfigError(
                f"no ops key: give --key or BO_OPS_KEY, or run `make run` to write {DEV_KEYS_FILE}"
            )
        return {"Authorization": f"Bearer {self.ops_key}"}

    @classmethod
    def from_env(
        cls,
        *,
        key: str | None = None,
        keys_file: Path | None = None,
        bootstrap_servers: str | None = None,
    ) -> OpsConfig:
        """`BO_<SERVICE>_URL` (e.g. BO_LEDGER_URL) or http://127.0.0.1:<default port>;
        `<SERVICE>_DATABASE_URL` as the services read it; `KAFKA_BOOTSTRAP_SERVERS`; the key
        from --key, else BO_OPS_KEY, else the "ops" key of var/dev-keys.json."""
        urls = {
            s.name: os.environ.get(
                f"BO_{s.name.upper()}_URL", f"http://127.0.0.1:{s.default_port}"
            ).rstrip("/")
            for s in SERVICES
        }
        database_urls = {
            s.name: os.environ.get(
                f"{s.env_prefix}_DATABASE_URL",
                f"postgresql+asyncpg://postgres@127.0.0.1:5432/bo_{s.name}",
            )
            for s in DATABASE_SERVICES
        }
        return cls(
            urls=urls,
            database_urls=database_urls,
            bootstrap_servers=bootstrap_servers
            or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ops_key=key or os.environ.get("BO_OPS_KEY") or _key_from_file(keys_file),
        )

    @classmethod
    def for_stack(cls, stack: Stack, *, ops_key: str) -> OpsConfig:
        """The same for a stack started by bo_tools.stack (tests, bench)."""
        return cls(
            urls={s.name: stack.url(s.name) for s in SERVICES},
            database_urls={s.name: stack.database_url(s) for s in DATABASE_SERVICES},
            bootstrap_servers=stack.bootstrap,
            ops_key=ops_key,
        )

    def environment(self) -> dict[str, str]:
        """The same configuration as environment variables, for a `bo` subprocess."""
        env = {f"BO_{name.upper()}_URL": url for name, url in self.urls.items()}
        for service in DATABASE_SERVICES:
            env[f"{service.env_prefix}_DATABASE_URL"] = self.database_urls[service.name]
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        env["BO_OPS_KEY"] = self.ops_key
        return env


def _key_from_file(path: Path | None) -> str:
    """The development ops key, or "" (commands that need a key then say so)."""
    path = path or Path(os.environ.get("BO_KEYS_FILE", str(DEV_KEYS_FILE)))
    try:
        return str(json.loads(path.read_text())["ops"])
    except (OSError, ValueError, KeyError):
        return ""
