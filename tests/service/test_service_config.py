"""The configuration file, the schema migrations, and the key and rate-limit primitives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tomasulo.exceptions import WorkflowError
from tomasulo.service._config import ServiceConfig, load_service_config, loads_service_config
from tomasulo.service._keys import VerifiedKeys, hash_secret, new_key, parse_key, verify
from tomasulo.service._ratelimit import RateLimiter
from tomasulo.service._serve import tool_sources
from tomasulo.service._store import Database

FULL = """
host: 127.0.0.1
port: 0
tools:
  - math
  - builtin: echo
  - import: tests.service.svctools:secret_vault
models:
  fast:
    base_url: http://127.0.0.1:9/v1
    model: small
    dialect: vllm
    api_key_env: FAST_KEY
    prices: {prompt: 0.1, completion: 0.3}
  big: {base_url: http://127.0.0.1:9/v1, model: large}
default_model: big
tenants:
  acme:
    name: Acme
    tools: [math]
    models: [fast]
    limits: {requests_per_minute: 10, concurrent_runs: 2, tokens_per_day: 1000, cost_per_day: 1.5}
limits: {max_body_bytes: 2048}
"""


def test_a_full_file_reads() -> None:
    config = loads_service_config(FULL)
    models, default, problem = config.resolved_models()
    assert (list(models), default, problem) == (["fast", "big"], "big", None)
    assert models["fast"].price_table().cost(1_000_000, 0) == pytest.approx(0.1)
    assert models["fast"].settings({"FAST_KEY": "k"}).api_key == "k"
    assert config.tenants["acme"].limits.concurrent_runs == 2
    assert config.limits.max_body_bytes == 2048


def test_an_empty_file_is_all_defaults() -> None:
    config = loads_service_config("")
    assert config == ServiceConfig()
    assert config.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("hots: x\n", 1, 1, ["unknown key 'hots'", "did you mean 'host'"]),
        ("limits:\n  max_body_byte: 10\n", 2, 3, ["unknown key 'max_body_byte' in limits", "max_body_bytes"]),
        ("tenants:\n  acme:\n    limits: {requests_per_minute: 0}\n", 3, 35, ["greater than or equal to 1"]),
        ("tenants:\n  Bad Id: {}\n", 2, 3, ["tenant id 'Bad Id'"]),
        ("models:\n  m: {model: x}\n", 2, 6, ["models.m.base_url: a value is required"]),
        ("models:\n  m: {base_url: u, model: x, dialect: gpt}\n", 2, 39, ["dialect"]),
        ("models:\n  m: {base_url: u, model: x}\ndefault_model: n\n", 1, 1, ["default_model 'n' is not one"]),
        ("port: [1\n", 2, 1, ["YAML syntax error"]),
        ("- a\n- b\n", None, None, ["a mapping"]),
    ],
)
def test_bad_files_name_line_and_column(
    text: str, line: int | None, column: int | None, words: list[str]
) -> None:
    with pytest.raises(WorkflowError) as caught:
        loads_service_config(text, path="service.yaml")
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    for word in words:
        assert word in str(error)
    assert "service.yaml" in str(error)


def test_a_bad_tool_entry_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("tools:\n  - math\n  - builtin: nope\n")
    config = load_service_config(path)
    with pytest.raises(WorkflowError) as caught:
        tool_sources(config)
    assert caught.value.line == 3
    assert "unknown built-in tool 'nope'" in str(caught.value)


def test_an_unreadable_file() -> None:
    with pytest.raises(WorkflowError, match="cannot read"):
        load_service_config("/nonexistent/service.yaml")


def test_models_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOMASULO_BASE_URL", "TOMASULO_MODEL", "TOMASULO_DIALECT", "TOMASULO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    models, default, problem = ServiceConfig().resolved_models()
    assert (models, default) == ({}, None)
    assert problem and "missing" in problem
    monkeypatch.setenv("TOMASULO_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TOMASULO_MODEL", "m")
    monkeypatch.setenv("TOMASULO_DIALECT", "llamacpp")
    models, default, problem = ServiceConfig().resolved_models()
    assert default == "default" and problem is None
    assert (models["default"].model, models["default"].dialect) == ("m", "llamacpp")


# -- migrations -----------------------------------------------------------------------------------


def test_the_migrated_schema_matches_the_tables(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to change: migrations and ``_schema`` agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tomasulo.service._schema import metadata

    db = Database.open(database_url)
    try:
        db.upgrade()
        db.upgrade()  # a second upgrade is a no-op
        assert db.revision() == "0002"
        with db.engine.connect() as connection:
            diff = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), metadata
            )
        assert diff == []
        names = set(metadata.tables)
        assert names == {
            "tenants",
            "api_keys",
            "runs",
            "events",
            "results",
            "idempotency_keys",
            "batches",
            "batch_items",
            "tenant_usage",
        }
    finally:
        db.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.close()


def test_a_bad_database_url_is_a_clear_error() -> None:
    from tomasulo.exceptions import ConfigError

    with pytest.raises(ConfigError, match="not a database URL"):
        Database.open("nonsense")
    with pytest.raises(ConfigError, match="not supported"):
        Database.open("mysql://x@y/z")


# -- keys and rate limits -------------------------------------------------------------------------


def test_keys_hash_and_verify() -> None:
    key_id, secret, full = new_key()
    assert parse_key(full) == (key_id, secret)
    assert parse_key(full + "x") is None
    salt, stored = hash_secret(secret)
    assert verify(secret, salt, stored)
    assert not verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"), salt, stored)
    assert not verify(secret, salt, "md5:x")
    other_salt, other = hash_secret(secret)
    assert other != stored and other_salt != salt  # salted: the same secret hashes differently


def test_verified_keys_forget_a_revoked_key() -> None:
    from tomasulo.service._keys import Principal

    cache = VerifiedKeys(ttl=60)
    who = Principal("k1", "acme", "member")
    cache.put("tmsk_token", who)
    assert cache.get("tmsk_token") == who
    cache.forget(key_id="k1")
    assert cache.get("tmsk_token") is None


def test_the_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.check("t", 2) for _ in range(3)] == [None, None, 30]
    assert limiter.check("other", 2) is None
    now[0] = 30.0
    assert limiter.check("t", 2) is None
    assert limiter.check("t", None) is None
