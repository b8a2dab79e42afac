"""app_account against the lab's Residency Scheduler schema (lab/scheduler/db/schema.sql) in a real PostgreSQL 15."""

from __future__ import annotations

import pytest

from ansible_collections.sre.runbooks.plugins.modules import app_account
from tests.integration._postgres import lab_schema_database
from tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration._postgres"]
DB = "accounts_test"


@pytest.fixture
def db(postgres_server):
    lab_schema_database(postgres_server, DB)
    with postgres_server.connect(dbname=DB) as conn:
        for name, role in (("jdoe", "resident"), ("asmith", "faculty"), ("root", "admin")):
            conn.execute("INSERT INTO users (username, email, hashed_password, password_salt, role, failed_login_attempts)"
                         " VALUES (%s, %s, %s, 's', %s, 7)", (name, f"{name}@example.org", f"hash-{name}", role))
        conn.execute("""INSERT INTO sessions (id, user_id, expires_at, revoked_at)
                        SELECT gen_random_uuid(), u.id, now() + interval '1 hour', NULL::timestamptz FROM users u, generate_series(1, 2)
                        UNION ALL SELECT gen_random_uuid(), u.id, now() - interval '1 hour', NULL FROM users u
                        UNION ALL SELECT gen_random_uuid(), u.id, now() + interval '1 hour', now() - interval '1 day' FROM users u""")
    yield postgres_server


def state(server):
    with server.connect(dbname=DB) as conn:
        users = conn.execute("SELECT username, is_locked, locked_at IS NOT NULL, failed_login_attempts, mfa_enabled, hashed_password,"
                             " (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND revoked_at IS NULL AND expires_at > now())"
                             " FROM users u ORDER BY id").fetchall()
        audit = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    return users, audit


def account(monkeypatch, server, check=False, **args):
    full = server.module_args(database=DB)
    full.update({"_ansible_check_mode": check, "_ansible_diff": True})
    full.update(args)
    return run_module(monkeypatch, app_account.main, full)


def test_lock_check_mode_diff_idempotence_and_unlock(monkeypatch, db):
    before = state(db)
    preview, failed = account(monkeypatch, db, check=True, accounts=["jdoe", "asmith"], lock=True, reason="INC-9")
    assert not failed, preview
    assert preview["changed"] is True and state(db) == before
    assert preview["diff"]["before"] == "jdoe: locked=False, live_sessions=2\nasmith: locked=False, live_sessions=2\n"
    assert preview["diff"]["after"] == "jdoe: locked=True, live_sessions=0\nasmith: locked=True, live_sessions=0\n"

    result, failed = account(monkeypatch, db, accounts=["jdoe", "asmith"], lock=True, reason="INC-9")
    assert not failed and result["changed"] is True
    users, audit = state(db)
    assert users[0][1:3] == (True, True) and users[0][6] == 0 and users[1][6] == 0
    assert users[2][1] is False and users[2][6] == 2  # root untouched
    assert audit == 2
    with db.connect(dbname=DB) as conn:
        action, details = conn.execute("SELECT action, details FROM audit_log ORDER BY id LIMIT 1").fetchone()
    assert action == "sre_account_lock" and details["reason"] == "INC-9" and details["changes"]["locked"] == {"before": False, "after": True}

    again, failed = account(monkeypatch, db, accounts=["jdoe", "asmith"], lock=True, reason="INC-9")
    assert not failed and again["changed"] is False and state(db) == (users, audit)

    unlocked, failed = account(monkeypatch, db, accounts=["jdoe"], lock=False)
    assert not failed and unlocked["changed"] is True
    users, _audit = state(db)
    assert users[0][1:4] == (False, False, 0)


def test_force_reset_and_mfa(monkeypatch, db):
    result, failed = account(monkeypatch, db, accounts=["jdoe"], force_password_reset=True, require_mfa=True)
    assert not failed, result
    users, _audit = state(db)
    assert users[0][5] == "!reset!hash-jdoe" and users[0][4] is True and users[0][6] == 0
    assert users[0][1] is False  # not locked
    assert "hash-jdoe" not in repr(result)
    again, failed = account(monkeypatch, db, accounts=["jdoe"], force_password_reset=True, require_mfa=True)
    assert not failed and again["changed"] is False


def test_guard_rails_change_nothing(monkeypatch, db):
    before = state(db)
    result, failed = account(monkeypatch, db, accounts=["jdoe", "ghost"], lock=True)
    assert failed and result["msg"].startswith("accounts: not found in users.username: ghost")
    result, failed = account(monkeypatch, db, accounts=["jdoe", "root"], lock=True)
    assert failed and result["msg"].startswith("allow_protected: root")
    result, failed = account(monkeypatch, db, accounts=["jdoe", "asmith"], lock=True, max_accounts=1)
    assert failed and result["msg"].startswith("max_accounts: 2")
    result, failed = account(monkeypatch, db, accounts=["jdoe"])
    assert failed and result["msg"].startswith("lock: nothing to do")
    result, failed = account(monkeypatch, db, accounts=["jdoe"], lock=True, columns={"lockd": "x"})
    assert failed and result["msg"].startswith("columns: unknown keys lockd")
    # A failure midway (the audit insert, after the users and sessions updates ran) rolls the whole transaction back.
    result, failed = account(monkeypatch, db, accounts=["jdoe"], lock=True, require_mfa=True, audit={"action": "no_such_column"})
    assert failed and "no_such_column" in result["msg"]
    assert state(db) == before
    ignored, failed = account(monkeypatch, db, accounts=["jdoe", "ghost"], lock=True, missing="ignore")
    assert not failed and ignored["missing"] == ["ghost"] and ignored["changed"] is True


def test_configurable_names_and_email_match(monkeypatch, db):
    with db.connect(dbname=DB) as conn:
        conn.execute("ALTER TABLE users RENAME COLUMN is_locked TO disabled")
        conn.execute("ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false")
    result, failed = account(monkeypatch, db, accounts=["asmith@example.org"], match_column="email", lock=True, force_password_reset=True,
                             columns={"locked": "disabled", "password_reset": "must_change_password"}, audit={"table": None})
    assert not failed, result
    with db.connect(dbname=DB) as conn:
        row = conn.execute("SELECT disabled, must_change_password, hashed_password FROM users WHERE username = 'asmith'").fetchone()
        audit = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    assert row == (True, True, "hash-asmith") and audit == 0
