"""API credentials for live venues: from the environment or a secrets file outside the repository.

Credentials are held as pydantic ``SecretStr`` values, whose ``repr`` and ``str`` are ``**********``, so a
key that reaches a log line, a traceback's locals or a settings dump by accident stays hidden; only the
code that signs requests calls ``get_secret_value()``. ``botframe.log.redact`` also masks log values under
secret-looking keys.

Where they come from, first found wins, per value:

1. environment variables (names chosen by the plugin's settings, e.g. ``BOTFRAME_CCXT_API_KEY``);
2. a TOML secrets file named in the config (``api_key = "..."``, ``secret = "..."``, optionally
   ``password = "..."``; or the same keys under a ``[<section>]`` table, e.g. ``[binance]``). The file must
   lie outside any git work tree, so it cannot be committed by mistake; a path inside one is refused.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

__all__ = ["ApiCredentials", "SecretsError", "git_work_tree_of", "load_credentials"]


class SecretsError(Exception):
    """Credentials are missing, or their file is unusable (inside a repository, unreadable, malformed)."""


class ApiCredentials(BaseModel):
    """An API key pair (and a passphrase for venues that want one), never shown in clear."""

    model_config = ConfigDict(frozen=True)

    api_key: SecretStr
    secret: SecretStr
    password: SecretStr | None = None
    source: str = ""  # where they came from, for messages ("environment", "secrets file /path")


def git_work_tree_of(path: Path) -> Path | None:
    """The git work tree that contains ``path`` (a folder with ``.git``), or None."""
    for folder in [path, *path.parents]:
        if (folder / ".git").exists():
            return folder
    return None


def _read_file(path: Path, section: str) -> dict[str, str]:
    resolved = path.expanduser().resolve()
    tree = git_work_tree_of(resolved.parent)
    if tree is not None:
        raise SecretsError(f"secrets file {resolved} is inside the git work tree {tree}; move it outside the "
                           "repository (e.g. ~/.config/botframe/secrets.toml) so it can never be committed")
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretsError(f"secrets file {resolved} does not exist") from None
    except OSError as exc:
        raise SecretsError(f"secrets file {resolved} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message may quote a line of the file: do not repeat it, only where it is.
        raise SecretsError(f"secrets file {resolved} is not valid TOML (line {getattr(exc, 'lineno', '?')})") from None
    table = data.get(section, data) if section else data
    if not isinstance(table, dict):
        raise SecretsError(f"secrets file {resolved}: [{section}] must be a table")
    return {k: v for k, v in table.items() if isinstance(v, str) and k in ("api_key", "secret", "password")}


def load_credentials(*, api_key_env: str, secret_env: str, password_env: str = "",
                     secrets_file: str | Path | None = None, section: str = "",
                     environ: Mapping[str, str] | None = None) -> ApiCredentials:
    """Find the credentials (see the module docstring); raise :class:`SecretsError` saying what to set."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: list[str] = []
    for name, var in (("api_key", api_key_env), ("secret", secret_env), ("password", password_env)):
        if var and env.get(var):
            values[name] = env[var]
            if "environment" not in sources:
                sources.append("environment")
    if secrets_file and ("api_key" not in values or "secret" not in values):
        path = Path(secrets_file).expanduser()
        from_file = _read_file(path, section)
        for name, value in from_file.items():
            values.setdefault(name, value)
        sources.append(f"secrets file {path.resolve()}")
        mode = path.resolve().stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            import structlog

            structlog.get_logger("botframe.secrets").warning(
                "secrets file is readable by other users; chmod 600 it", path=str(path.resolve()))
    missing = [n for n in ("api_key", "secret") if not values.get(n)]
    if missing:
        where = f"set {api_key_env} and {secret_env} in the environment"
        where += f", or put api_key and secret in {secrets_file}" if secrets_file else \
            ", or name a secrets file outside the repository in the config (secrets_file)"
        raise SecretsError(f"no API {' and '.join(missing)} found: {where}")
    return ApiCredentials(
        api_key=SecretStr(values["api_key"]), secret=SecretStr(values["secret"]),
        password=SecretStr(values["password"]) if values.get("password") else None,
        source=" and ".join(sources))
