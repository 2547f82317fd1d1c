#!/usr/bin/env python3
"""Fills a migrated authgate database the way a deployment that has served a while looks
(issue 16), in bulk SQL run by the database itself, not through the API:

    populate.py DATABASE_URL ACCOUNTS [--ended]

ACCOUNTS accounts (one shared argon2 hash: nobody logs in as them), one live session each
(random UUIDv4 ids, as wave 1 made them) and two refresh tokens per session, the older
spent. --ended: every one of those sessions ended two days ago (logged out), for
`authgate cleanup` to remove. Prints how long it took. SQLite through the standard library, PostgreSQL
through psql.
"""
import subprocess
import sys
import time

URL, ACCOUNTS = sys.argv[1], int(sys.argv[2])
ENDED = "--ended" in sys.argv[3:]
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000
REVOKED_AT = f"{NOW_MS - 2 * DAY_MS}" if ENDED else "NULL"
# A well-formed argon2id hash of some other password.
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$dQx9h3bG1tZ3J0bmxkZ3VwYW5kb2ZmZnNk"
SPENT_AFTER_MS = 60_000

SQLITE = f"""
BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {ACCOUNTS})
INSERT INTO users (id, email, password_hash, created_at, email_verified, roles, disabled)
SELECT randomblob(16), 'populated' || x || '@populated.example', '{HASH}',
       {NOW_MS} - x * 1000, 1, '', 0 FROM n;
INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at, client_ip, user_agent)
SELECT randomblob(16), id, created_at, {NOW_MS} + 30 * {DAY_MS}, {REVOKED_AT}, '127.0.0.1',
       'populated'
FROM users WHERE email LIKE 'populated%@populated.example';
INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at, spent_at)
SELECT randomblob(16), id, randomblob(32), created_at, expires_at, created_at + {SPENT_AFTER_MS}
FROM sessions WHERE user_agent = 'populated';
INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
SELECT randomblob(16), id, randomblob(32), created_at + {SPENT_AFTER_MS}, expires_at
FROM sessions WHERE user_agent = 'populated';
COMMIT;
"""

POSTGRES = f"""
BEGIN;
INSERT INTO users (id, email, password_hash, created_at, email_verified, roles, disabled)
SELECT gen_random_uuid(), 'populated' || x || '@populated.example', '{HASH}',
       {NOW_MS} - x * 1000, true, '', false FROM generate_series(1, {ACCOUNTS}) AS x;
INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at, client_ip, user_agent)
SELECT gen_random_uuid(), id, created_at, {NOW_MS} + 30 * {DAY_MS}::bigint, {REVOKED_AT}::bigint,
       '127.0.0.1', 'populated'
FROM users WHERE email LIKE 'populated%@populated.example';
INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at, spent_at)
SELECT gen_random_uuid(), id, sha256(id::text::bytea), created_at, expires_at,
       created_at + {SPENT_AFTER_MS}
FROM sessions WHERE user_agent = 'populated';
INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
SELECT gen_random_uuid(), id, sha256((id::text || 'next')::bytea), created_at + {SPENT_AFTER_MS},
       expires_at
FROM sessions WHERE user_agent = 'populated';
COMMIT;
VACUUM ANALYZE;
"""

started = time.monotonic()
if URL.startswith("sqlite:"):
    import sqlite3

    path = URL.split("://", 1)[-1].split("?", 1)[0]
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SQLITE)
    # No ANALYZE: authgate never runs one, so a real database has no statistics either.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
else:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", URL], input=POSTGRES, text=True,
                   check=True)
print(f"populated {ACCOUNTS} accounts, {ACCOUNTS} {'ended' if ENDED else 'live'} sessions, "
      f"{2 * ACCOUNTS} refresh tokens "
      f"in {time.monotonic() - started:.1f} s")
