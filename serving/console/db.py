"""The console's database: who may sign in, and the touches CSMs record on accounts.

One SQLAlchemy schema for every database: a SQLite file beside the latest-scores store is the
embedded default (`tierwise.settings.console_db`), and `TIERWISE_CONSOLE_DB` takes any
SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db` for a team whose console runs on
several replicas. The tables are created on first use.

Passwords are stored only as argon2id hashes (argon2-cffi's `PasswordHasher`); the plain
password is never stored, logged or echoed. Touches are what a later study will use to measure
whether touches reduce churn, so each keeps who recorded it, when (UTC), and the account's risk
and tier at that moment.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path

import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Date, DateTime, Float, String, Text, create_engine, delete, select, update
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, NoSuchModuleError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from features.errors import DataError
from features.io import output_file, output_folder, write_table
from tierwise import settings

TOUCH_KINDS = ("call", "email", "qbr", "save_play", "expansion_conversation", "other")
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # shell- and URL-safe, at most 64 characters
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps one sign-in from hashing megabytes
MAX_ACCOUNT_ID = 200
MAX_AUTHOR = 64
MAX_OUTCOME = 200
MAX_NOTE = 5000  # a few paragraphs; more is a pasted document, not a touch note
MAX_TIER = 32
EARLIEST_TOUCH = date(2000, 1, 1)  # before this a date is a typo (0226 for 2026), not a touch
# The date is "today" somewhere on Earth until 14 hours past UTC midnight (UTC+14): a CSM there
# records today's call while UTC is still yesterday.
AHEAD_OF_UTC = timedelta(hours=14)


class Base(DeclarativeBase):
    """The console tables' metadata."""


class UserRow(Base):
    """A console user: a name and an argon2 hash of the password, never the password."""

    __tablename__ = "console_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TouchRow(Base):
    """A touch as stored: one row per recorded touch, never updated."""

    __tablename__ = "console_touches"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(String(MAX_ACCOUNT_ID), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    touched_on: Mapped[date] = mapped_column(Date)
    outcome: Mapped[str] = mapped_column(String(MAX_OUTCOME))
    note: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(MAX_AUTHOR))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    risk_at_touch: Mapped[float | None] = mapped_column(Float)
    tier_at_touch: Mapped[str | None] = mapped_column(String(MAX_TIER))


@dataclass
class Touch:
    """What a CSM did on an account, with who recorded it, when, and the account's risk and tier then.

    `id` is given by the database when the touch is recorded (None before).
    """

    account_id: str
    kind: str  # one of TOUCH_KINDS
    touched_on: date  # the day of the touch (the CSM's own date)
    outcome: str = ""
    note: str = ""
    author: str = ""  # the console user who recorded it
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when it was recorded, UTC
    risk_at_touch: float | None = None  # the account's churn risk in the served batch when recorded
    tier_at_touch: str | None = None
    id: int | None = None


TOUCH_FIELDS = [f.name for f in fields(Touch)]


class ConsoleDB:
    """The console database at a SQLAlchemy URL; its tables are created on first use.

    Bad input (an unknown touch kind, an empty account id, a date in the future, a note too
    long, a short password, an existing user name) raises `DataError` (a ValueError) naming
    the field, and writes nothing.
    """

    def __init__(self, url: str | None = None, hasher: PasswordHasher | None = None):
        """Open (and on first use create) the database.

        Args:
            url: a SQLAlchemy URL (default: `settings.console_db()`).
            hasher: argon2-cffi's hasher (default: its RFC 9106 low-memory profile, ~50 ms a hash);
                a hash made with other parameters still verifies, and is upgraded when it does.
        """
        self.url = url or settings.console_db()
        db_file = settings.sqlite_path(self.url)
        if db_file is not None:  # SQLite creates the file, not its folder
            output_folder(db_file.parent, "console database folder").mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise DataError(f"console database {settings.redact_uri(self.url)}: not a usable URL: {exc}") from exc
        self.create_tables()
        self.hasher = hasher or PasswordHasher()

    def create_tables(self) -> None:
        """Create the tables that are missing (first use), or a DataError when the database cannot be reached.

        Two processes starting at once (console replicas) may both try to create them; PostgreSQL
        then refuses the second, which finds them made when it looks again.
        """
        try:
            try:
                Base.metadata.create_all(self.engine)
            except (IntegrityError, ProgrammingError):
                Base.metadata.create_all(self.engine)
        except DatabaseError as exc:  # unreachable, refused, or not a database at all
            cause = str(exc.orig or exc).strip().splitlines()[0]
            raise DataError(f"console database {settings.redact_uri(self.url)}: cannot open it: {cause}") from exc

    def close(self) -> None:
        """Close the database's pooled connections (a PostgreSQL server counts them)."""
        self.engine.dispose()

    @cached_property
    def decoy(self) -> str:
        """A hash checked when the user does not exist: a wrong name then costs as long as a wrong
        password, so sign-in timing does not tell which names exist."""
        return self.hasher.hash(secrets.token_urlsafe(16))

    def add_user(self, name: str, password: str) -> None:
        """Add a user who may sign in; only an argon2 hash of the password is stored.

        Raises:
            DataError: a bad name, a password too short or too long, or a name already taken.
        """
        check_user_name(name)
        check_password(password)
        if name in self.users():  # before hashing, which takes a while
            raise DataError(f"console user {name!r} already exists")
        row = UserRow(name=name, password_hash=self.hasher.hash(password), created_at=datetime.now(UTC))
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
        except IntegrityError as exc:  # another process added the name meanwhile
            raise DataError(f"console user {name!r} already exists") from exc

    def remove_user(self, name: str) -> None:
        """Remove a user (their touches stay, with their name as author).

        Raises:
            DataError: no user has that name.
        """
        with Session(self.engine) as session, session.begin():
            removed = session.execute(delete(UserRow).where(UserRow.name == name)).rowcount
        if not removed:
            raise DataError(f"console user {name!r} does not exist (users: {', '.join(self.users()) or 'none'})")

    def verify(self, name: str, password: str) -> bool:
        """Whether `password` is the user's; False for an unknown user, without revealing which it was.

        A hash made with other parameters than this hasher's (older, weaker defaults) is replaced
        on success. The hash is checked outside any transaction: it takes a while.
        """
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return False
        with Session(self.engine) as session:
            stored = session.scalar(select(UserRow.password_hash).where(UserRow.name == name))
        try:
            self.hasher.verify(stored or self.decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        if stored is None:
            return False
        if self.hasher.check_needs_rehash(stored):
            with Session(self.engine) as session, session.begin():
                change = update(UserRow).where(UserRow.name == name).values(password_hash=self.hasher.hash(password))
                session.execute(change)
        return True

    def users(self) -> list[str]:
        """Every user name, sorted."""
        with Session(self.engine) as session:
            return list(session.scalars(select(UserRow.name).order_by(UserRow.name)))

    def add_touch(self, touch: Touch) -> int:
        """Record a touch; returns its id.

        Raises:
            DataError: a field is missing, of the wrong type, out of range or too long (named).
        """
        checked = check_touch(touch)
        row = TouchRow(**{k: v for k, v in asdict(checked).items() if k != "id"})
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return row.id

    def touches(self, account_id: str | None = None) -> list[Touch]:
        """The touches of one account (or all), newest first (by touch date, then when recorded)."""
        query = select(TouchRow).order_by(TouchRow.touched_on.desc(), TouchRow.recorded_at.desc(), TouchRow.id.desc())
        if account_id is not None:
            query = query.where(TouchRow.account_id == str(account_id))
        with Session(self.engine) as session:
            return [as_touch(row) for row in session.scalars(query)]

    def export(self, path: Path | str) -> Path:
        """Write every touch, in the order recorded, to CSV (spreadsheet-safe) or Parquet by extension, atomically.

        Raises:
            DataError: the path is not a .csv/.parquet file that can be written.
        """
        path = output_file(path, what="touches export")
        rows = sorted(self.touches(), key=lambda t: t.id)
        frame = pd.DataFrame([asdict(t) for t in rows], columns=TOUCH_FIELDS)
        return write_table(frame[["id", *TOUCH_FIELDS[:-1]]], path)


def as_touch(row: TouchRow) -> Touch:
    """A stored touch as a `Touch`; SQLite hands back naive datetimes, which were stored as UTC."""
    recorded = row.recorded_at if row.recorded_at.tzinfo else row.recorded_at.replace(tzinfo=UTC)
    return Touch(
        account_id=row.account_id,
        kind=row.kind,
        touched_on=row.touched_on,
        outcome=row.outcome,
        note=row.note,
        author=row.author,
        recorded_at=recorded.astimezone(UTC),
        risk_at_touch=row.risk_at_touch,
        tier_at_touch=row.tier_at_touch,
        id=row.id,
    )


def check_user_name(name: str) -> None:
    """A DataError unless `name` is 1-64 letters, digits or `._@-`, starting with a letter or digit."""
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise DataError(f"user name {name!r}: use 1-64 letters, digits or . _ @ - (starting with a letter or digit)")


def check_password(password: str) -> None:
    """A DataError unless the password has at least MIN_PASSWORD characters (and at most MAX_PASSWORD)."""
    if not isinstance(password, str) or not password:
        raise DataError("password: empty")
    if len(password) < MIN_PASSWORD:
        raise DataError(f"password: too short ({len(password)} characters; use at least {MIN_PASSWORD})")
    if len(password) > MAX_PASSWORD:
        raise DataError(f"password: too long (more than {MAX_PASSWORD} characters)")


def check_touch(touch: Touch) -> Touch:
    """The touch with its fields checked and normalised (text stripped, date parsed, time in UTC).

    Raises:
        DataError: naming the first bad field.
    """
    account_id = text_field("account_id", touch.account_id, MAX_ACCOUNT_ID, required=True)
    if touch.kind not in TOUCH_KINDS:
        raise DataError(f"kind {touch.kind!r}: use one of {', '.join(TOUCH_KINDS)}")
    touched_on = touch_date(touch.touched_on)
    recorded_at = touch.recorded_at
    if not isinstance(recorded_at, datetime):
        raise DataError(f"recorded_at {recorded_at!r}: not a date and time")
    recorded_at = recorded_at.replace(tzinfo=UTC) if recorded_at.tzinfo is None else recorded_at.astimezone(UTC)
    risk = touch.risk_at_touch
    if risk is not None:
        if isinstance(risk, bool) or not isinstance(risk, int | float) or not math.isfinite(risk) or not 0 <= risk <= 1:
            raise DataError(f"risk_at_touch {risk!r}: a probability between 0 and 1, or None")
        risk = float(risk)
    tier = text_field("tier_at_touch", touch.tier_at_touch, MAX_TIER) if touch.tier_at_touch is not None else None
    return Touch(
        account_id=account_id,
        kind=touch.kind,
        touched_on=touched_on,
        outcome=text_field("outcome", touch.outcome, MAX_OUTCOME),
        note=text_field("note", touch.note, MAX_NOTE),
        author=text_field("author", touch.author, MAX_AUTHOR, required=True),
        recorded_at=recorded_at,
        risk_at_touch=risk,
        tier_at_touch=tier or None,
    )


def text_field(name: str, value, limit: int, required: bool = False) -> str:
    """A text field stripped of surrounding blanks, or a DataError naming it (not text, empty, too long)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{name}: expected text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise DataError(f"{name}: empty")
    if len(value) > limit:
        raise DataError(f"{name}: too long ({len(value):,} characters; at most {limit:,})")
    if "\x00" in value:
        raise DataError(f"{name}: contains a NUL character")
    return value


def touch_date(value) -> date:
    """The touch date: a date (or YYYY-MM-DD text) not after today anywhere on Earth nor before 2000."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise DataError(f"touched_on {value!r}: not a date (use YYYY-MM-DD)") from exc
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise DataError(f"touched_on {value!r}: not a date (use YYYY-MM-DD)")
    latest = (datetime.now(UTC) + AHEAD_OF_UTC).date()
    if value > latest:
        raise DataError(f"touched_on {value.isoformat()}: in the future (a touch is recorded once it happened)")
    if value < EARLIEST_TOUCH:
        raise DataError(f"touched_on {value.isoformat()}: before {EARLIEST_TOUCH.isoformat()}, a typo?")
    return value
