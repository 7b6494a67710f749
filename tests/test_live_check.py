"""Credentials for live trading and ``check-live``: where keys come from, that they never show, what they may do."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import SecretStr

from botframe.plugins import PluginSystem
from botframe.secrets import ApiCredentials, SecretsError, load_credentials
from botframe.settings import Settings, load_settings
from botframe_plugins.ccxt import plugin as ccxt_plugin
from botframe_plugins.ccxt.check import check_live_async

REPO = Path(__file__).resolve().parents[1]
KEY, SECRET = "check-key-0123456789", "check-secret-9876543210"

CONFIG = f"""
mode = "live"
executor = "ccxt"

[services.sim]
enabled = true
seed = 3

[[services.sim.symbols]]
symbol = "BTC/USDT"
start_price = "60000"
tick_size = "0.01"
lot_size = "0.00001"

[[services.sim.accounts]]
api_key = "{KEY}"
secret = "{SECRET}"
balances = {{ USDT = "5000", BTC = "0.5" }}
can_withdraw = WITHDRAW

[venues.binance]
symbols = ["BTC/USDT"]

[strategies.imbalance]
venue = "binance"
symbols = ["BTC/USDT"]

[executors.ccxt]
exchange_id = "binance"
rest_url = "simulator"
ws_url = "simulator"
symbols = ["BTC/USDT"]
http_timeout_secs = 3.0
"""


def _settings(tmp_path: Path, *, withdraw: bool = False) -> tuple[Settings, PluginSystem]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("WITHDRAW", "true" if withdraw else "false"))
    plugins = PluginSystem()
    plugins.load_entry_points()
    if plugins.pm.get_plugin("ccxt") is None:
        plugins.register(ccxt_plugin, "ccxt")
    return load_settings(config, plugins), plugins


async def test_check_live_authenticates_read_only_and_prints_what_the_key_may_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOTFRAME_CCXT_API_KEY", KEY)
    monkeypatch.setenv("BOTFRAME_CCXT_SECRET", SECRET)
    settings, plugins = _settings(tmp_path)
    out = io.StringIO()

    code = await check_live_async(settings, plugins, out=out)

    text = out.getvalue()
    assert code == 0, text
    assert "authenticated: yes" in text
    assert "may read: yes   may trade: yes   may withdraw: no" in text
    assert "BTC 0.5" in text and "USDT 5000" in text
    logged = capsys.readouterr()
    for secret in (KEY, SECRET):
        assert secret not in text and secret not in logged.out and secret not in logged.err


async def test_check_live_warns_about_a_key_that_may_withdraw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTFRAME_CCXT_API_KEY", KEY)
    monkeypatch.setenv("BOTFRAME_CCXT_SECRET", SECRET)
    settings, plugins = _settings(tmp_path, withdraw=True)
    out = io.StringIO()

    code = await check_live_async(settings, plugins, out=out)

    assert code == 0
    assert "WARNING: this key may withdraw funds" in out.getvalue()


async def test_check_live_with_a_wrong_secret_says_the_venue_refused_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTFRAME_CCXT_API_KEY", KEY)
    monkeypatch.setenv("BOTFRAME_CCXT_SECRET", "not-the-secret")
    settings, plugins = _settings(tmp_path)
    out = io.StringIO()

    code = await check_live_async(settings, plugins, out=out)

    assert code == 1
    assert "authenticated: NO" in out.getvalue() and "Signature for this request is not valid" in out.getvalue()
    assert "not-the-secret" not in out.getvalue()


async def test_check_live_without_credentials_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOTFRAME_CCXT_API_KEY", raising=False)
    monkeypatch.delenv("BOTFRAME_CCXT_SECRET", raising=False)
    settings, plugins = _settings(tmp_path)
    out = io.StringIO()

    code = await check_live_async(settings, plugins, out=out)

    assert code == 2
    assert "BOTFRAME_CCXT_API_KEY" in out.getvalue() and "BOTFRAME_CCXT_SECRET" in out.getvalue()


def test_credentials_from_the_environment_are_secret_values() -> None:
    creds = load_credentials(api_key_env="K", secret_env="S", environ={"K": KEY, "S": SECRET})

    assert creds.api_key.get_secret_value() == KEY
    assert KEY not in repr(creds) and SECRET not in repr(creds) and SECRET not in str(creds)
    assert creds.source == "environment"


def test_credentials_from_a_secrets_file_outside_the_repository(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(f'[binance]\napi_key = "{KEY}"\nsecret = "{SECRET}"\n')
    path.chmod(0o600)

    creds = load_credentials(api_key_env="K", secret_env="S", secrets_file=path, section="binance", environ={})

    assert creds.secret.get_secret_value() == SECRET
    assert "secrets file" in creds.source


def test_a_secrets_file_inside_the_git_work_tree_is_refused(tmp_path: Path) -> None:
    inside = REPO / "tests" / "never-commit-secrets.toml"

    with pytest.raises(SecretsError, match="inside the git work tree"):
        load_credentials(api_key_env="K", secret_env="S", secrets_file=inside, environ={})


def test_missing_credentials_name_the_variables_to_set() -> None:
    with pytest.raises(SecretsError, match="set K and S in the environment"):
        load_credentials(api_key_env="K", secret_env="S", environ={})


def test_a_malformed_secrets_file_error_does_not_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(f'api_key = "{KEY}"\nsecret = {SECRET}\n')

    with pytest.raises(SecretsError) as info:
        load_credentials(api_key_env="K", secret_env="S", secrets_file=path, environ={})

    assert SECRET not in str(info.value) and KEY not in str(info.value)


def test_credentials_model_never_dumps_clear_values() -> None:
    creds = ApiCredentials(api_key=SecretStr(KEY), secret=SecretStr(SECRET))

    assert KEY not in creds.model_dump_json() and SECRET not in creds.model_dump_json()
