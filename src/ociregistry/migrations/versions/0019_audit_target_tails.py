"""the audit log's search by the words of its targets: a B-tree of each target's tails

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 11:40:00

Issue 15, flat growth: the audit log's search (`q`) went through a trigram index of the
targets (migration 0017), and every trigram of a target is shared by a large part of the
log (`/api/v1/registries/…`, `img0…`), so each search read posting lists as long as a
tenth of the table and cost more the longer the log grew. Here each event's target is
indexed by its tails that start a word (where a letter, a digit or a non-ASCII character
follows the start or an ASCII separator such as `/`, `-`, `.`, `:`, `_`): the first
TAIL characters of each, folded to lower case in ASCII as SQLite's LIKE folds. A search
starting a word is then one range of that B-tree (`tail >= q AND tail < q || U+10FFFF`),
whose length is the number of matches, however long the log.

About nine rows an event (a typical target has 5 to 12 words; ~500 bytes an event on SQLite,
where the trigram index takes ~250 and the event itself ~150), kept by triggers on
`audit_log` as the trigram index is, so every writer (the audit log's group commit, a
retention run, SQL by hand) keeps it; events never change, so insert and delete do. A
deleted event's tails are found again from its target, by their key, so no second index
(by event) doubles the table.
SQLite reads the positions of a target's characters from `audit_target_positions` (1 to
MAX_TARGET, the targets' length) because a trigger cannot hold a recursive query;
PostgreSQL's trigger splits the target with a regular expression and folds with
translate() (not lower(), which folds beyond ASCII by the database's locale), and its
tails sort by code point (COLLATE "C") so a prefix is one range. The trigram index stays
for a `q` that holds no word.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAIL = 64  # characters of a tail kept in the index (a sha256 digest's hex is one word of 64)
MAX_TARGET = 512  # ops/audit.py keeps this much of a path

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _sqlite_word(character: str) -> str:
    return f"({character} GLOB '[0-9A-Za-z]' OR unicode({character}) > 127)"


def _sqlite_tails(target: str, event_id: str) -> str:
    """The rows of the tails of `target` that start a word, for an INSERT."""
    here, before = f"substr({target}, n, 1)", f"substr({target}, n - 1, 1)"
    return (
        f"SELECT lower(substr({target}, n, {TAIL})) AS tail, {event_id} FROM audit_target_positions"
        f" WHERE n <= length({target}) AND {_sqlite_word(here)}"
        f" AND (n = 1 OR NOT {_sqlite_word(before)})"
    )


_SQLITE = (
    "CREATE TABLE audit_target_positions (n INTEGER PRIMARY KEY)",
    "WITH RECURSIVE counted(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counted"
    f" WHERE n < {MAX_TARGET}) INSERT INTO audit_target_positions SELECT n FROM counted",
    "CREATE TABLE audit_target_tails (tail TEXT NOT NULL, event_id INTEGER NOT NULL,"
    " PRIMARY KEY (tail, event_id)) WITHOUT ROWID",
    "INSERT OR IGNORE INTO audit_target_tails (tail, event_id) "
    + _sqlite_tails("audit_log.target", "audit_log.id").replace(
        "FROM audit_target_positions", "FROM audit_log, audit_target_positions"
    ),
    "CREATE TRIGGER audit_target_tails_in AFTER INSERT ON audit_log BEGIN "
    "INSERT OR IGNORE INTO audit_target_tails (tail, event_id) "
    f"{_sqlite_tails('NEW.target', 'NEW.id')}; END",
    "CREATE TRIGGER audit_target_tails_out AFTER DELETE ON audit_log BEGIN "
    "DELETE FROM audit_target_tails WHERE event_id = OLD.id AND tail IN "
    f"(SELECT tail FROM ({_sqlite_tails('OLD.target', 'OLD.id')})); END",
)


_SEPARATOR = r"[\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"  # ASCII, not a letter or digit
_WORD = r"[^\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"


def _postgresql_tails(target: str, event_id: str) -> str:
    """The same rows as _sqlite_tails: the target split where a word follows a separator
    (one pass of a regular expression; a test of each character, as SQLite does it, took
    twice the CPU), each piece's start (its offset, summed) a tail's if a word starts there."""
    pieces = (
        f"SELECT (sum(length(piece)) OVER (ORDER BY o) - length(piece) + 1)::integer AS n"
        f" FROM regexp_split_to_table({target}, '(?<={_SEPARATOR})(?={_WORD})')"
        " WITH ORDINALITY AS pieces(piece, o)"
    )
    folded = f"translate(substr({target}, n, {TAIL}), '{_UPPER}', '{_UPPER.lower()}')"
    return (
        f"SELECT {folded} AS tail, {event_id} FROM ({pieces}) AS starts"
        f" WHERE substr({target}, n, 1) ~ '{_WORD}'"
    )


_POSTGRESQL = (
    'CREATE TABLE audit_target_tails (tail text COLLATE "C" NOT NULL,'
    " event_id integer NOT NULL, PRIMARY KEY (tail, event_id))",
    "INSERT INTO audit_target_tails (tail, event_id) SELECT DISTINCT tails.* FROM audit_log,"
    f" LATERAL ({_postgresql_tails('audit_log.target', 'audit_log.id')}) AS tails",
    f"""
    CREATE FUNCTION ociregistry_audit_target_tails() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO audit_target_tails (tail, event_id)
                {_postgresql_tails("NEW.target", "NEW.id")}
                ON CONFLICT DO NOTHING;
        ELSE
            DELETE FROM audit_target_tails WHERE event_id = OLD.id AND tail IN
                (SELECT tail FROM ({_postgresql_tails("OLD.target", "OLD.id")}) AS tails);
        END IF;
        RETURN NULL;
    END
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER audit_target_tails_kept AFTER INSERT OR DELETE ON audit_log"
    " FOR EACH ROW EXECUTE FUNCTION ociregistry_audit_target_tails()",
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRESQL if postgresql else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_target_tails_kept ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS ociregistry_audit_target_tails()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_target_tails_in")
        op.execute("DROP TRIGGER IF EXISTS audit_target_tails_out")
        op.execute("DROP TABLE IF EXISTS audit_target_positions")
    op.execute("DROP TABLE IF EXISTS audit_target_tails")
