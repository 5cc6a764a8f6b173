"""The per-turn bookkeeping's statements, compiled once and run on the database driver's own connection.

A turn's claim and finish (storage.turns) are a few fixed statements. Run through SQLAlchemy's Connection, each paid
for an execution context, a cursor wrapper and a result object: about 0.3 ms of CPU a statement, as much again as
SQLite took to run it, and about half of what the claim cost a turn on PostgreSQL. Here SQLAlchemy still writes the
SQL (for each dialect, from the same Core statements) and still converts the values (each parameter's own bind
processor, so a datetime is stored exactly as everywhere else); only the execution is the driver's.

The work itself is written once, as a generator that yields each statement and receives its outcome, so the same
function runs synchronously on SQLite's thread and asynchronously on asyncpg (see storage.one_trip).
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What a statement did: its first row (for a statement that returns rows), how many rows it changed, and every
    row it returned. Rows are named tuples of the columns' values, converted as SQLAlchemy would convert them."""

    row: tuple[Any, ...] | None
    count: int
    rows: Sequence[Any] = ()
    counts: tuple[int, ...] = ()  # statements run Together: how many rows each one changed


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in the order the SQL takes them (SQLite repeats a name used twice)
    processors: tuple[Callable[[Any], Any] | None, ...]
    returns_rows: bool
    row: Callable[..., tuple[Any, ...]]  # makes a named tuple of the columns returned
    results: tuple[Callable[[Any], Any] | None, ...] | None  # each column's result processor; None: none needs one


class Prepared:
    """One fixed Core statement, built per dialect by `build(dialect name)` (an upsert is each dialect's own
    construct) or the same for all. Its parameters are all named bindparams; the columns it returns are converted
    by their types' own result processors (a datetime, JSON, a boolean on SQLite)."""

    def __init__(self, statement: ClauseElement | Callable[[str], ClauseElement], *, many: bool = False) -> None:
        self._build = statement if callable(statement) else lambda _dialect: statement
        self._many = many  # run only over Many rows: compiled without the RETURNING a single-row insert would have
        self._compiled: dict[str, _Compiled] = {}

    def bind(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...], bool]:
        """The SQL for `dialect`, its positional arguments for `params`, and whether it returns rows."""
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        arguments = tuple(
            process(params[name]) if process is not None else params[name]
            for name, process in zip(compiled.names, compiled.processors, strict=True)
        )
        return compiled.sql, arguments, compiled.returns_rows

    def read(self, dialect: Dialect, fetched: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows the driver returned, each converted and named."""
        compiled = self._compiled[dialect.name]  # bound before anything could be fetched
        make, results = compiled.row, compiled.results
        if results is None:
            return [make(row) for row in fetched]
        return [
            make(process(value) if process is not None else value for process, value in zip(results, row, strict=True))
            for row in fetched
        ]

    def bind_many(self, dialect: Dialect, many: Many) -> tuple[str, list[tuple[Any, ...]]]:
        """The SQL for `dialect` and each row's positional arguments, for a statement that returns no rows."""
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        assert self._many and many.rows  # executemany reads no rows, and runs nothing for none
        return compiled.sql, [self.bind(dialect, row)[1] for row in many.rows]

    def compiled(self, dialect: Dialect) -> _Compiled:
        return self._compiled.get(dialect.name) or self._compile(dialect)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._build(dialect.name).compile(dialect=dialect, for_executemany=self._many)
        assert isinstance(compiled, SQLCompiler) and compiled.positional and compiled.positiontup is not None
        # A statement that must be rewritten per call (an expanding IN, a literal bound at execution) cannot be
        # compiled once; none of the bookkeeping's is.
        assert not compiled.literal_execute_params and not compiled.post_compile_params
        names = tuple(compiled.positiontup)
        processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
        columns = compiled._result_columns  # noqa: SLF001 - what SQLAlchemy's own result reads its columns from
        # The driver's type code is not known before a row arrives; none of these columns' processors need it.
        results = tuple(column.type._cached_result_processor(dialect, None) for column in columns)  # noqa: SLF001
        row_type: Any = namedtuple("Row", [column.keyname for column in columns], rename=True)  # type: ignore[misc]  # noqa: PYI024
        made = _Compiled(
            compiled.string,
            names,
            processors,
            bool(compiled.returning) or not (compiled.isinsert or compiled.isupdate or compiled.isdelete),
            row_type._make,
            results if any(results) else None,
        )
        self._compiled[dialect.name] = made
        return made


@dataclass(frozen=True)
class Many:
    """Parameters for running one statement over many rows at once (the driver's executemany): one statement
    prepared once, where a statement per row would be a round trip per row on PostgreSQL."""

    rows: Sequence[Mapping[str, Any]]


class Together:
    """Statements that only change rows, run as one: their Outcome counts the rows each changed.

    On PostgreSQL they are one statement, each a data-modifying CTE: one round trip, atomic on its own. In a
    transaction the same statements took a round trip each, plus BEGIN and COMMIT: four or five for a turn's closing
    writes. Elsewhere each runs in turn in the caller's transaction (on SQLite that is still one trip to its thread,
    storage.one_trip). Made by together(), once per combination.
    """

    def __init__(self, parts: tuple[Prepared, ...]) -> None:
        self.parts = parts
        self._sql: dict[str, str] = {}

    def bind(self, dialect: Dialect, params: Sequence[Mapping[str, Any]]) -> tuple[str, tuple[Any, ...]]:
        """One statement for PostgreSQL and its positional arguments: each part's, in turn."""
        sql = self._sql.get(dialect.name) or self._combine(dialect)
        arguments = tuple(
            argument
            for part, values in zip(self.parts, params, strict=True)
            for argument in part.bind(dialect, values)[1]
        )
        return sql, arguments

    def _combine(self, dialect: Dialect) -> str:
        # Each part is compiled on its own, as it is everywhere else, and its numbered parameters ($1, $2, ...) are
        # moved past the previous parts'. Built as one SQLAlchemy statement instead, parts that share a parameter's
        # name for different values (a key, the time) would have to be renamed throughout.
        assert dialect.paramstyle == "numeric_dollar"
        clauses, counts, offset = [], [], 0
        for index, part in enumerate(self.parts):
            compiled = part.compiled(dialect)
            # No literal (where a "$1" would be text) and nothing returned, as every part is an insert, update or
            # upsert of bound values; the numbers run 1..n, one per name.
            assert "'" not in compiled.sql and " RETURNING " not in compiled.sql and not compiled.returns_rows
            numbers = {int(number) for number in _PLACEHOLDER.findall(compiled.sql)}
            assert numbers == set(range(1, len(compiled.names) + 1))
            moved = _PLACEHOLDER.sub(partial(_moved, offset), compiled.sql)
            clauses.append(f"part{index} AS ({moved} RETURNING 1)")
            counts.append(f"(SELECT count(*) FROM part{index})")
            offset += len(compiled.names)
        sql = f"WITH {', '.join(clauses)} SELECT {', '.join(counts)}"
        self._sql[dialect.name] = sql
        return sql


_PLACEHOLDER = re.compile(r"\$(\d+)")


def _moved(offset: int, found: re.Match[str]) -> str:
    return f"${int(found.group(1)) + offset}"


_together: dict[tuple[int, ...], Together] = {}


def together(*parts: Prepared) -> Together:
    """The Together of these statements, made once (the statements are module constants)."""
    key = tuple(id(part) for part in parts)
    made = _together.get(key)
    if made is None:
        made = _together[key] = Together(parts)
    return made


# One statement's parameters, as work yields them.
Write = tuple[Prepared, Mapping[str, Any]]
# What storage.one_trip runs: yields (statement, parameters), receives each one's Outcome, returns the result.
Work = Generator[tuple[Prepared, Mapping[str, Any] | Many] | tuple[Together, Sequence[Mapping[str, Any]]], Outcome, T]


def run_on_sqlite(
    connection: Any,  # noqa: ANN401 - a sqlite3.Connection
    dialect: Dialect,
    work: Work[T],
    *,
    each_whole: bool = False,
) -> T:
    """Drive `work` on a sqlite3 connection, in the caller's transaction, on the connection's own thread.

    `each_whole`: there is no transaction around the work, and each statement it yields commits on its own (SQLite's
    autocommit), as each is whole on its own; the parts of a Together, one statement on PostgreSQL, are kept
    together here in a transaction of their own."""
    outcome: Outcome | None = None
    try:
        while True:
            prepared, params = work.send(outcome) if outcome is not None else next(work)
            if isinstance(prepared, Together):
                parts = prepared.parts
                alone = each_whole and len(parts) > 1
                if alone:
                    connection.execute("BEGIN IMMEDIATE")
                try:
                    counts = []
                    for part, values in zip(parts, cast("Sequence[Mapping[str, Any]]", params), strict=True):
                        sql, arguments, _ = part.bind(dialect, values)
                        counts.append(connection.execute(sql, arguments).rowcount)
                    if alone:
                        connection.execute("COMMIT")
                except BaseException:
                    if alone and connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
                outcome = Outcome(None, sum(counts), counts=tuple(counts))
                continue
            params = cast("Mapping[str, Any] | Many", params)  # a Together took the other shape, above
            if isinstance(params, Many):
                sql, many = prepared.bind_many(dialect, params)
                connection.executemany(sql, many)
                outcome = Outcome(None, len(many))
                continue
            sql, arguments, returns_rows = prepared.bind(dialect, params)
            cursor = connection.execute(sql, arguments)
            # Every row is read, so the statement has finished before the next one (or the COMMIT) runs.
            rows = prepared.read(dialect, cursor.fetchall()) if returns_rows else []
            outcome = Outcome(rows[0] if rows else None, cursor.rowcount, rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_on_asyncpg(connection: Any, dialect: Dialect, work: Work[T]) -> T:  # noqa: ANN401 - asyncpg's
    """Drive `work` on an asyncpg connection (prepared and cached by asyncpg, in the caller's transaction if any)."""
    outcome: Outcome | None = None
    try:
        while True:
            prepared, params = work.send(outcome) if outcome is not None else next(work)
            if isinstance(prepared, Together):
                outcome = await _together_on_asyncpg(
                    connection, dialect, prepared, cast("Sequence[Mapping[str, Any]]", params)
                )
                continue
            params = cast("Mapping[str, Any] | Many", params)  # a Together took the other shape, above
            if isinstance(params, Many):
                sql, many = prepared.bind_many(dialect, params)
                await connection.executemany(sql, many)
                outcome = Outcome(None, len(many))
                continue
            sql, arguments, returns_rows = prepared.bind(dialect, params)
            if returns_rows:
                rows = prepared.read(dialect, await connection.fetch(sql, *arguments))
                outcome = Outcome(rows[0] if rows else None, len(rows), rows)
            else:
                status = await connection.execute(sql, *arguments)  # e.g. "UPDATE 1", "INSERT 0 1"
                outcome = Outcome(None, _status_count(status))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _together_on_asyncpg(
    connection: Any,  # noqa: ANN401 - asyncpg's
    dialect: Dialect,
    together: Together,
    params: Sequence[Mapping[str, Any]],
) -> Outcome:
    if len(together.parts) == 1:  # as itself: a CTE around one statement would only cost PostgreSQL more
        sql, arguments, _ = together.parts[0].bind(dialect, params[0])
        status = await connection.execute(sql, *arguments)  # e.g. "UPDATE 1", "INSERT 0 1"
        count = _status_count(status)
        return Outcome(None, count, counts=(count,))
    sql, arguments = together.bind(dialect, params)
    counts = tuple(await connection.fetchrow(sql, *arguments))
    return Outcome(None, sum(counts), counts=counts)


def _status_count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0
