"""The answers of a reader study in SQLite: one row per (reader, trial), on disk before the server replies.

The database holds what the analysis needs and nothing the browser gets: the pack's key (which method made each
image; copied from key.json when the database is created, so the answers stay interpretable if the pack folder
is lost or rebuilt), the readers with their link tokens and their stored trial layouts, and the answers. It runs
in WAL mode with synchronous=FULL, so a committed answer survives a crash of the server or of the machine, and
`add-reader` or `export` can run beside a serving process.

An answer is accepted only for the reader's next unanswered trial; an answer to a trial already answered leaves
the stored one as it is (a double press, or a second browser of the same reader behind by one), so neither can
change or add an answer.
"""

import csv
import os
import re
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from migros.reader_study.layout import Trial, reader_trials
from migros.reader_study.pack_format import Pack

READER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
READER_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")  # secrets.token_urlsafe(24): 192 random bits
SIDES = ("left", "right")
MAX_RESPONSE_MS = 24 * 3600 * 1000  # a day: anything longer is a broken clock, not a reading time
EXPORT_COLUMNS = [
    "pack_id", "dataset", "reader", "trial", "item", "class", "method_a", "method_b", "left_method", "right_method",
    "chosen_side", "chosen_method", "response_ms", "answered_at", "left_token", "right_token",
]
SCHEMA = """
CREATE TABLE study (pack_id TEXT NOT NULL, dataset TEXT NOT NULL, seed INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE comparisons (comparison INTEGER PRIMARY KEY, method_a TEXT NOT NULL, method_b TEXT NOT NULL);
CREATE TABLE items (
    item INTEGER PRIMARY KEY, comparison INTEGER NOT NULL REFERENCES comparisons, class TEXT NOT NULL,
    token_a TEXT NOT NULL, token_b TEXT NOT NULL);
CREATE TABLE readers (
    reader TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, slot INTEGER NOT NULL UNIQUE, added_at TEXT NOT NULL);
CREATE TABLE trials (
    reader TEXT NOT NULL REFERENCES readers, trial INTEGER NOT NULL, item INTEGER NOT NULL REFERENCES items,
    left_token TEXT NOT NULL, right_token TEXT NOT NULL, PRIMARY KEY (reader, trial));
CREATE TABLE answers (
    reader TEXT NOT NULL, trial INTEGER NOT NULL,
    chosen_side TEXT NOT NULL CHECK (chosen_side IN ('left', 'right')),
    response_ms INTEGER NOT NULL CHECK (response_ms >= 0), answered_at TEXT NOT NULL,
    PRIMARY KEY (reader, trial), FOREIGN KEY (reader, trial) REFERENCES trials);
"""


class StoreError(ValueError):
    """A database that does not fit the pack, or a request the store refuses; the message says why."""


class OutOfOrder(StoreError):
    """An answer to a trial that is not the reader's next unanswered one."""


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int
    next_trial: Trial | None  # None once every trial is answered


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def default_database(pack: Pack) -> Path:
    """Where a pack's answers go unless told otherwise: outside results/ (which Snakemake rewrites and users
    delete), named after the pack so that a rebuilt pack never meets another pack's answers."""
    return Path("reader_studies") / f"{pack.study['dataset']}-{pack.pack_id}.sqlite"


class StudyStore:
    """One database connection shared by the server's threads; every operation holds the lock and, if it writes,
    commits before returning."""

    def __init__(self, path: Path, pack: Pack | None = None):
        """Open the database at `path`; with `pack`, create it for that pack if it does not exist yet, and
        refuse it if it belongs to another pack. Without one (export), it must exist."""
        path = Path(path)
        if pack is None and not path.is_file():
            raise StoreError(f"{path}: no such study database")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute("PRAGMA synchronous = FULL")
        self._connection.execute("PRAGMA foreign_keys = ON")
        with self._transaction() as cursor:
            created = cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'study'").fetchone()
            if not created:
                if pack is None:
                    raise StoreError(f"{path}: not a study database")
                self._create(cursor, pack)
            study = cursor.execute("SELECT pack_id, dataset, seed FROM study").fetchone()
        self.pack_id, self.dataset, self.seed = study
        if pack is not None and pack.pack_id != self.pack_id:
            self.close()
            raise StoreError(
                f"{path} holds the answers of pack {self.pack_id}, but {pack.folder} is pack {pack.pack_id} (it was "
                "rebuilt since): serve the pack those answers belong to, or give this pack a new database (--db)")

    @contextmanager
    def _transaction(self):
        """A write transaction: BEGIN IMMEDIATE takes the database's write lock at once, so that this process and
        another (add-reader beside the server) never interleave; committed on success, rolled back on error."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection.cursor()
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    @staticmethod
    def _create(cursor: sqlite3.Cursor, pack: Pack) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                cursor.execute(statement)
        cursor.execute("INSERT INTO study VALUES (?, ?, ?, ?)",
                       (pack.pack_id, pack.study["dataset"], pack.study["seed"], now()))
        cursor.executemany("INSERT INTO comparisons VALUES (?, ?, ?)",
                           [(index, *pair) for index, pair in enumerate(pack.key["comparisons"])])
        cursor.executemany("INSERT INTO items VALUES (:item, :comparison, :class, :token_a, :token_b)",
                           pack.key["items"])

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _items(self) -> list[dict]:
        cursor = self._connection.execute("SELECT item, comparison, class, token_a, token_b FROM items")
        return [dict(zip(("item", "comparison", "class", "token_a", "token_b"), row)) for row in cursor]

    def add_reader(self, reader: str) -> tuple[str, bool]:
        """(the reader's link token, whether the reader is new); an existing reader keeps their token and
        layout. A new reader gets the next slot and their trials from `migros.reader_study.layout`."""
        if not READER_ID.fullmatch(reader):
            raise StoreError(f"reader id {reader!r}: use 1-40 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit")
        with self._lock, self._transaction() as cursor:
            if existing := cursor.execute("SELECT token FROM readers WHERE reader = ?", (reader,)).fetchone():
                return existing[0], False
            slot = cursor.execute("SELECT COALESCE(MAX(slot) + 1, 0) FROM readers").fetchone()[0]
            token = secrets.token_urlsafe(24)
            cursor.execute("INSERT INTO readers VALUES (?, ?, ?, ?)", (reader, token, slot, now()))
            cursor.executemany(
                "INSERT INTO trials VALUES (?, ?, ?, ?, ?)",
                [(reader, trial.trial, trial.item, trial.left_token, trial.right_token)
                 for trial in reader_trials(self._items(), self.seed, slot)])
            return token, True

    def reader_of(self, token: str) -> str | None:
        """The reader whose link carries `token`; None for any other string."""
        if not READER_TOKEN.fullmatch(token):
            return None
        with self._lock:
            row = self._connection.execute("SELECT reader FROM readers WHERE token = ?", (token,)).fetchone()
        return row[0] if row else None

    def readers(self) -> list[tuple[str, str]]:
        """(reader, token) of every reader, in the order they were added."""
        with self._lock:
            return self._connection.execute("SELECT reader, token FROM readers ORDER BY slot").fetchall()

    def _progress(self, cursor, reader: str) -> Progress:
        total = cursor.execute("SELECT COUNT(*) FROM trials WHERE reader = ?", (reader,)).fetchone()[0]
        answered = cursor.execute("SELECT COUNT(*) FROM answers WHERE reader = ?", (reader,)).fetchone()[0]
        row = cursor.execute(
            "SELECT trial, item, left_token, right_token FROM trials t WHERE reader = ? AND NOT EXISTS "
            "(SELECT 1 FROM answers a WHERE a.reader = t.reader AND a.trial = t.trial) ORDER BY trial LIMIT 1",
            (reader,)).fetchone()
        return Progress(answered, total, Trial(*row) if row else None)

    def progress(self, reader: str) -> Progress:
        with self._lock:
            return self._progress(self._connection.cursor(), reader)

    def record_answer(self, reader: str, trial: int, side: str, response_ms: int) -> tuple[bool, Progress]:
        """Store the reader's answer to `trial` unless that trial is answered already; (stored now, progress).

        Raises OutOfOrder for a trial beyond the next unanswered one, StoreError for a bad side or time."""
        if side not in SIDES:
            raise StoreError(f"side must be one of {SIDES}, got {side!r}")
        if not 0 <= response_ms <= MAX_RESPONSE_MS:
            raise StoreError(f"response time {response_ms} ms is outside 0..{MAX_RESPONSE_MS}")
        with self._lock, self._transaction() as cursor:
            answered = cursor.execute("SELECT 1 FROM answers WHERE reader = ? AND trial = ?",
                                      (reader, trial)).fetchone()
            if not answered:
                upcoming = self._progress(cursor, reader).next_trial
                if upcoming is None or upcoming.trial != trial:
                    raise OutOfOrder(f"trial {trial} is not reader {reader}'s next unanswered trial")
                cursor.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?)", (reader, trial, side, response_ms, now()))
            progress = self._progress(cursor, reader)
        return not answered, progress

    def export_rows(self) -> list[dict]:
        """Every answer with its item, the compared methods, the method shown on each side and the one chosen;
        readers in the order they were added, trials in each reader's order."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT a.reader, a.trial, t.item, i.class, c.method_a, c.method_b, t.left_token = i.token_a, "
                "a.chosen_side, a.response_ms, a.answered_at, t.left_token, t.right_token "
                "FROM answers a JOIN trials t USING (reader, trial) JOIN items i ON i.item = t.item "
                "JOIN comparisons c ON c.comparison = i.comparison JOIN readers r ON r.reader = a.reader "
                "ORDER BY r.slot, a.trial").fetchall()
        exported = []
        for (reader, trial, item, name, method_a, method_b, a_on_left, side, response_ms, answered_at, left_token,
             right_token) in rows:
            left, right = (method_a, method_b) if a_on_left else (method_b, method_a)
            exported.append({
                "pack_id": self.pack_id, "dataset": self.dataset, "reader": reader, "trial": trial, "item": item,
                "class": name, "method_a": method_a, "method_b": method_b, "left_method": left,
                "right_method": right, "chosen_side": side, "chosen_method": left if side == "left" else right,
                "response_ms": response_ms, "answered_at": answered_at, "left_token": left_token,
                "right_token": right_token,
            })
        return exported

    def export(self, csv_path: Path) -> int:
        """Write every answer (`export_rows`) to `csv_path` atomically; returns the number of answers."""
        rows = self.export_rows()
        csv_path = Path(csv_path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        partial = csv_path.with_name(csv_path.name + ".partial")
        with partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, EXPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(partial, csv_path)
        return len(rows)
