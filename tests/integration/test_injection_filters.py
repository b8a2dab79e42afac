"""SQL injection strings in every free-text filter of the PostgreSQL modules, against a real PostgreSQL 15.

Each filter value is data: it matches no session or account (a literal compare, never SQL), the canary table and the
accounts are unchanged, and a name that must be an identifier (schema, table, column) is refused by name."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.modules import acgme_compliance, app_account, pg_activity, pg_terminate
from tests.integration._postgres import lab_schema_database
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]
DB = "injection_test"
PAYLOADS = ["'; DROP TABLE canary; --", "x' OR '1'='1", "1); DROP TABLE canary; --", "%' OR 1=1 --", "\\'; DROP TABLE canary; --",
            "$$; DROP TABLE canary; $$", "\"; DROP TABLE canary; --"]


@pytest.fixture(scope="module")
def db(postgres_server):
    lab_schema_database(postgres_server, DB)
    with postgres_server.connect(dbname=DB) as conn:
        conn.execute("CREATE TABLE canary (id int); INSERT INTO canary VALUES (1)")
        conn.execute("INSERT INTO users (username, email, hashed_password, password_salt, role, failed_login_attempts)"
                     " VALUES ('jdoe', 'jdoe@example.org', 'hash-jdoe', 's', 'resident', 0)")
    yield postgres_server


def untouched(server) -> tuple:
    with server.connect(dbname=DB) as conn:
        canary = conn.execute("SELECT count(*) FROM canary").fetchone()[0]
        users = conn.execute("SELECT username, is_locked, hashed_password, mfa_enabled FROM users ORDER BY id").fetchall()
    return canary, users


def run(monkeypatch, server, module, **args):
    full = server.module_args(database=DB, application_name="sre-injection-test")
    full.update(args)
    return run_module(monkeypatch, module.main, full)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_session_filters_are_literal(monkeypatch, db, payload):
    before = untouched(db)
    for option in ("filter_user", "filter_application_name", "filter_database", "filter_client_addr"):
        result, failed = run(monkeypatch, db, pg_activity, **{option: [payload]})
        assert not failed and result["selected_total"] == 0, (option, result.get("msg"))
    for option in ("user_filter", "application_name_filter", "database_filter", "query_pattern"):
        result, failed = run(monkeypatch, db, pg_terminate, state=["idle", "active", "idle in transaction"], **{option: [payload]
                             if option != "query_pattern" else payload})
        if failed:  # query_pattern is a PostgreSQL regular expression: an unbalanced one is refused by name
            assert option == "query_pattern" and result["msg"].startswith("query_pattern: not a valid"), result["msg"]
        else:
            assert result["count"] == 0 and result["sessions"] == [] and not result["changed"], (option, result)
    assert untouched(db) == before


@pytest.mark.parametrize("payload", PAYLOADS)
def test_account_names_are_literal_and_identifiers_refused(monkeypatch, db, payload):
    before = untouched(db)
    result, failed = run(monkeypatch, db, app_account, accounts=[payload], lock=True)
    assert failed and result["msg"].startswith("accounts: not found"), result["msg"]
    for option in ("match_column", "users_table", "schema"):
        result, failed = run(monkeypatch, db, app_account, accounts=["jdoe"], lock=True, **{option: payload})
        assert failed and option in result["msg"] and "Traceback" not in result["msg"], (option, result["msg"])
    result, failed = run(monkeypatch, db, acgme_compliance, source="postgres", timezone="UTC", db_schema=payload)
    assert failed and "db_schema" in result["msg"], result["msg"]
    assert untouched(db) == before
