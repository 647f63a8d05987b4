"""PostgreSQL storage: the hot paths as single SQL statements, the rest from the ORM storage.

The claim of ready work is one ``WITH picked AS (SELECT … FOR UPDATE SKIP LOCKED) UPDATE …
RETURNING *``, and recording a batch of finished executions (``update_many_by_id_and_settle``)
is one ``UPDATE … FROM unnest(…) RETURNING *`` per shape of update plus one that reports all of
the batch's children to their parents. Every statement is described where it is built; this is the
only module with raw SQL.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models

from ..models import FINISHED_STATUSES, CloseStatus, Status, TaskExecution
from ..notify import announce_channel, wakeup_payload
from ..wakeups import READY, one_queue
from .base import (
    SettleRequest,
    SettleResult,
    Update,
    UpdateByIdRequest,
)
from .orm import OrmStorage
from .pg_cursor import engine_cursor

_TABLE = TaskExecution._meta.db_table
_FIELDS = {field.name: field for field in TaskExecution._meta.concrete_fields}
#: Filters that guarantee an unfinished row (so ``close_status`` is still ``idle``).
_UNFINISHED_FILTERS = ("status", "is_finished")
#: Every column but the serial primary key, in model order: what an ``INSERT`` writes.
_INSERT_FIELDS = [field for field in TaskExecution._meta.concrete_fields if not field.primary_key]
#: Rows per ``INSERT``: psycopg sends at most 65,535 parameters with one statement.
_INSERT_CHUNK = 65_535 // len(_INSERT_FIELDS)


def _quote(name: str | None) -> str:
    return f'"{name}"'


#: Model fields whose database value is the Python value itself when it has this type (the
#: engine's own values always do); others go through ``get_db_prep_save``.
_PLAIN_TYPES: dict[type[models.Field[Any, Any]], type] = {
    models.CharField: str,
    models.TextField: str,
    models.IntegerField: int,
    models.BooleanField: bool,
    models.FloatField: float,
}


def _db_value(field: models.Field[Any, Any], value: Any, connection: Any) -> Any:
    """``field.get_db_prep_save(value, connection)``, without its cost for the plain values
    the engine writes thousands of times a second (psycopg adapts those by itself)."""
    if value is None:
        return None
    plain = _PLAIN_TYPES.get(type(field))
    if plain is not None and type(value) is plain:
        return value
    if type(value) is datetime and value.tzinfo is not None:
        return value
    return field.get_db_prep_save(value, connection)


_VARIES = object()


def _fresh_value(field: models.Field[Any, Any]) -> Any:
    """What ``field`` holds in a new row unless the row says otherwise (``_VARIES``: no such
    constant, e.g. a callable default or no default)."""
    if field.has_default():
        return _VARIES if callable(field.default) else field.default
    return None if field.null else _VARIES


def _literal(value: Any) -> str:
    """``value`` (``None``, a bool, a number or a string) as an SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


#: Per insert column, its constant in new rows: a batch whose rows all hold it sends it as a
#: literal in the statement's text instead of as one parameter per row.
_INSERT_CONSTANTS = [(field, _fresh_value(field)) for field in _INSERT_FIELDS]


@functools.lru_cache(maxsize=64)
def _insert_sql(parameters: tuple[bool, ...], rows: int, announce: str | None) -> str:
    """``INSERT … VALUES (…) RETURNING id`` for ``rows`` rows, ``%s`` for the columns that
    ``parameters`` flags, literals for the others; with ``announce`` (a channel),
    ``pg_notify`` in the same statement, delivered when the transaction commits."""
    columns = ", ".join(_quote(field.column) for field in _INSERT_FIELDS)
    row = (
        "("
        + ", ".join(
            "%s" if parameter else _literal(constant)
            for parameter, (_, constant) in zip(parameters, _INSERT_CONSTANTS, strict=True)
        )
        + ")"
    )
    insert = f"INSERT INTO {_TABLE} ({columns}) VALUES {', '.join([row] * rows)} RETURNING id"
    if announce is None:
        return insert
    # An uncorrelated scalar subquery runs once, however many rows were inserted.
    return f"WITH ins AS ({insert}) SELECT id, (SELECT pg_notify('{announce}', %s)) FROM ins"


#: ``RETURNING`` list of the statements that return whole rows: every column in model order,
#: so that a result row is the positional arguments of ``TaskExecution``.
_ROW_COLUMNS = ", ".join(f't."{field.column}"' for field in TaskExecution._meta.concrete_fields)
_ROW_ATTNAMES = [field.attname for field in TaskExecution._meta.concrete_fields]
#: Columns whose database value needs converting (``JSONField`` arrives as text).
_ROW_CONVERTERS = [
    (index, field.from_db_value)
    for index, field in enumerate(TaskExecution._meta.concrete_fields)
    if hasattr(field, "from_db_value")
]


def lock_concurrency_keys(using: str, keys: Sequence[str]) -> None:
    """``SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended('durable:' ||
    key, 0) AS h … ORDER BY h)``: one transaction-level advisory lock per concurrency key, taken
    in lock-id order (two claimers never wait on each other crosswise). Claimers of the same
    key take turns until their transactions end; other keys are not held up."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT "
            "hashtextextended('durable:' || k, 0) AS h FROM unnest(%s::text[]) AS k "
            "ORDER BY h) AS locks",
            [list(keys)],
        )


@functools.lru_cache(maxsize=256)
def _finish_types(
    using: str, update_keys: tuple[str, ...], filter_keys: tuple[str, ...]
) -> tuple[str, ...]:
    """The column types of the values of :meth:`PostgresStorage._finish_statement`."""
    connection = connections[using]
    names = (*update_keys, *filter_keys)
    return ("text", *(_FIELDS[name].db_type(connection) or "text" for name in names))


@functools.lru_cache(maxsize=256)
def _finish_sql(
    using: str,
    update_keys: tuple[str, ...],
    filter_keys: tuple[str, ...],
    top_level: bool,
    single: bool,
) -> str:
    """The text of :meth:`PostgresStorage._finish_statement` for one shape of requests."""
    columns = [f"u{i}" for i in range(len(update_keys))]
    filter_columns = [f"f{i}" for i in range(len(filter_keys))]
    sets = [
        f"{_quote(_FIELDS[name].column)} = v.{column}"
        for name, column in zip(update_keys, columns, strict=True)
    ]
    status_column = columns[update_keys.index("status")]
    now_column = columns[update_keys.index("updated_at")]
    close_work = (
        f"(v.{status_column} <> '{Status.COMPLETED}' AND (t.finalize IS NOT NULL OR "
        "(t.children IS NOT NULL AND jsonb_typeof(t.children) = 'array' "
        "AND jsonb_array_length(t.children) > 0)))"
    )
    sets += [
        f"close_status = CASE WHEN {close_work} THEN '{CloseStatus.READY}' "
        f"ELSE '{CloseStatus.CLOSED}' END",
        "close_expires_at = NULL",
        f"closed_at = CASE WHEN {close_work} THEN NULL ELSE v.{now_column} END",
    ]
    # The first condition restates the ids for the planner: an indexable restriction on ``t``
    # makes it look rows up by id however its statistics stand (on a table never analyzed it
    # otherwise may scan the table once per value, misled by ``parent_execution_id IS NULL``).
    ids = "t.execution_id = %s" if single else "t.execution_id = ANY(%s::text[])"
    where = [ids, "t.execution_id = v.id"] + [
        f"t.{_quote(_FIELDS[name].column)} = v.{column}"
        for name, column in zip(filter_keys, filter_columns, strict=True)
    ]
    if top_level:
        where.append("t.parent_execution_id IS NULL")
    types = _finish_types(using, update_keys, filter_keys)
    if single:
        source = "(VALUES (" + ", ".join(f"%s::{db_type}" for db_type in types) + "))"
    else:
        source = "unnest(" + ", ".join(f"%s::{db_type}[]" for db_type in types) + ")"
    return (
        f"UPDATE {_TABLE} AS t SET {', '.join(sets)} "
        f"FROM {source} AS v({', '.join(['id', *columns, *filter_columns])}) "
        f"WHERE {' AND '.join(where)}"
    )


class PostgresStorage(OrmStorage):
    """:class:`OrmStorage` with PostgreSQL statements for claiming and recording."""

    def _set_clause(self, update: Update, alias: str = "") -> tuple[list[str], list[Any]]:
        connection = connections[self.using]
        parts, params = [], []
        for name, value in update.items():
            field = _FIELDS[name]
            parts.append(f"{_quote(field.column)} = %s")
            params.append(_db_value(field, value, connection))
        return parts, params

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run ``sql`` (a statement returning rows) as a prepared statement with its parameters
        bound by the server; return its rows.

        Django's cursors merge parameters into the text client-side (every value escaped,
        the statement parsed and planned again on each call). The engine's statements run
        thousands of times a second with a fixed text: psycopg prepares each once per
        connection. As with Django's cursors, errors are Django's, the connection's
        ``execute_wrapper()`` hooks see the statement, and it is logged in
        ``connection.queries`` when queries are logged (``DEBUG``, ``assertNumQueries``).
        """
        connection = connections[self.using]
        connection.validate_thread_sharing()
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            connection.ensure_connection()
            cursor = engine_cursor(connection)

            def execute(sql: str, params: Any, many: bool, context: Any) -> None:
                cursor.execute(sql, params, prepare=True)

            run = execute
            for wrapper in reversed(connection.execute_wrappers):
                run = functools.partial(wrapper, run)
            started = time.monotonic()
            try:
                run(sql, params, False, {"connection": connection, "cursor": cursor})
            finally:
                if connection.queries_logged:
                    connection.queries_log.append(
                        {"sql": sql, "time": f"{time.monotonic() - started:.3f}"}
                    )
            return cursor.fetchall()

    def _raw(self, sql: str, params: Sequence[Any]) -> list[TaskExecution]:
        """Run ``sql`` (an ``UPDATE`` of alias ``t``) returning whole rows, build the executions.

        The ``RETURNING`` list is appended here: every column in model order, so that a result
        row is the positional arguments of ``TaskExecution`` (``t.*`` would follow the table's
        column order, which migrations may have made different).

        ``RawQuerySet`` would work out the column mapping and the converters again on every
        call; the claim and the settle run thousands of times a second.
        """
        connection = connections[self.using]
        results = self._execute(f"{sql} RETURNING {_ROW_COLUMNS}", params)
        rows = []
        for result in results:
            values = list(result)
            for index, convert in _ROW_CONVERTERS:
                if values[index] is not None:
                    values[index] = convert(values[index], None, connection)
            rows.append(TaskExecution.from_db(self.using, _ROW_ATTNAMES, values))
        return rows

    # -- inserting ---------------------------------------------------------------------------

    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        """``INSERT … VALUES (…), (…) RETURNING id``: one statement (per ``_INSERT_CHUNK`` rows)
        without the ORM's compilation on every call; sets each row's ``id`` like
        ``bulk_create``. With ``announce``, the same statement sends the ``NOTIFY`` that wakes
        other processes' executors (delivered on commit): no second transaction for it."""
        if not executions:
            return False
        channel = announce_channel(self.using) if announce else None
        if len(executions) <= _INSERT_CHUNK and not connections[self.using].in_atomic_block:
            self._insert_chunk(executions, channel)  # autocommit: one round trip
            return channel is not None
        # In the caller's transaction, a savepoint keeps it usable when the insert fails.
        with self._atomic():
            self._insert_rows(executions, channel)
        return channel is not None

    def _insert_rows(self, executions: Sequence[TaskExecution], channel: str | None = None) -> None:
        """The rows in ``_INSERT_CHUNK``-sized statements, in the current transaction (also the
        children spawned by ``update_many_by_id_and_insert_children_if_updated``); the first
        carries the ``NOTIFY`` on ``channel``, if any."""
        for start in range(0, len(executions), _INSERT_CHUNK):
            chunk = executions[start : start + _INSERT_CHUNK]
            self._insert_chunk(chunk, channel if start == 0 else None)

    def _insert_chunk(self, executions: Sequence[TaskExecution], channel: str | None) -> None:
        """One ``INSERT`` of ``executions``; a column that holds its new-row constant in every
        row is a literal of the statement, so that an enqueue sends its few varying values
        (the statement's text depends only on which columns vary: prepared once each)."""
        connection = connections[self.using]
        values = [[getattr(row, field.attname) for field in _INSERT_FIELDS] for row in executions]
        columns = zip(*values, strict=True)
        parameters = tuple(
            constant is _VARIES or column.count(constant) != len(column)
            for column, (_, constant) in zip(columns, _INSERT_CONSTANTS, strict=True)
        )
        params = [
            _db_value(field, value, connection)
            for row in values
            for (field, _), parameter, value in zip(_INSERT_CONSTANTS, parameters, row, strict=True)
            if parameter
        ]
        if channel is not None:
            queue = one_queue(row.queue for row in executions)
            params.append(wakeup_payload(READY, queue))
        ids = self._execute(_insert_sql(parameters, len(executions), channel), params)
        for row, (pk, *_) in zip(executions, ids, strict=True):
            row.id = pk
            row._state.adding = False
            row._state.db = self.using

    # -- writes by id --------------------------------------------------------------------------

    def _update_one(self, request: UpdateByIdRequest) -> bool:
        """``UPDATE … SET <update> WHERE execution_id = %s AND <filters> RETURNING 1``: the
        by-id write of ``update_many_by_id`` and of spawning children (a sequence's next step),
        without the ORM's compilation of each call."""
        connection = connections[self.using]
        sets, params = self._set_clause(request.update)
        where = ['"execution_id" = %s']
        params.append(request.execution_id)
        for name, value in (request.filters or {}).items():
            field = _FIELDS[name]
            if value is None:
                where.append(f"{_quote(field.column)} IS NULL")
            else:
                where.append(f"{_quote(field.column)} = %s")
                params.append(_db_value(field, value, connection))
        sql = f"UPDATE {_TABLE} SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING 1"
        return bool(self._execute(sql, params))

    # -- claiming ready work -----------------------------------------------------------------

    def update_by_status_and_start_at_less_than_and_return(
        self,
        *,
        status: str,
        start_at_less_than: datetime,
        update: Update,
        update_expires_at_with_started_at: datetime,
        limit: int,
        queues: Sequence[str] | None = None,
    ) -> list[TaskExecution]:
        """``WITH picked AS (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) UPDATE … SET <update>,
        expires_at = base + timeout FROM picked RETURNING *``: claims in one statement."""
        if limit <= 0:
            return []
        sets, params = self._set_clause(update)
        sets.append('"expires_at" = %s + t."timeout" * interval \'1 second\'')
        params.append(update_expires_at_with_started_at)
        where = "status = %s AND start_at < %s AND concurrency_key IS NULL"
        where_params: list[Any] = [status, start_at_less_than]
        if queues is not None:
            where += " AND queue = ANY(%s)"
            where_params.append(list(queues))
        # The locked rows are picked once, in a materialized CTE: as ``WHERE id IN (SELECT …
        # LIMIT n)`` the planner may run the subquery again and claim more than ``n`` rows.
        sql = (
            f"WITH picked AS MATERIALIZED (SELECT id FROM {_TABLE} WHERE {where} "
            "ORDER BY priority DESC, start_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {_TABLE} AS t SET {', '.join(sets)} FROM picked WHERE t.id = picked.id"
        )
        rows = self._raw(sql, [*where_params, limit, *params])
        rows.sort(key=lambda row: (-row.priority, row.start_at, row.id))
        return rows

    def update_by_id_and_status_and_start_at_less_than_and_return(
        self,
        *,
        execution_id: str,
        status: str,
        start_at_less_than: datetime,
        update: Update,
        update_expires_at_with_started_at: datetime,
    ) -> TaskExecution | None:
        """``WITH picked AS (SELECT id … WHERE execution_id = %s AND status = %s AND start_at
        < %s FOR UPDATE SKIP LOCKED) UPDATE … FROM picked RETURNING *``: claims one row by id
        in one statement (the Celery runner's claim)."""
        sets, params = self._set_clause(update)
        sets.append('"expires_at" = %s + t."timeout" * interval \'1 second\'')
        params.append(update_expires_at_with_started_at)
        sql = (
            f"WITH picked AS MATERIALIZED (SELECT id FROM {_TABLE} WHERE execution_id = %s "
            "AND status = %s AND start_at < %s AND concurrency_key IS NULL "
            "FOR UPDATE SKIP LOCKED) "
            f"UPDATE {_TABLE} AS t SET {', '.join(sets)} FROM picked WHERE t.id = picked.id"
        )
        rows = self._raw(sql, [execution_id, status, start_at_less_than, *params])
        if rows:
            return rows[0]
        # Not claimable, or a row with a concurrency key: that claim counts the key's runs.
        return super().update_by_id_and_status_and_start_at_less_than_and_return(
            execution_id=execution_id,
            status=status,
            start_at_less_than=start_at_less_than,
            update=update,
            update_expires_at_with_started_at=update_expires_at_with_started_at,
        )

    # -- recording finished executions -----------------------------------------------------------

    def update_many_by_id_and_settle(self, requests: Sequence[SettleRequest]) -> list[SettleResult]:
        fast = [
            r
            for r in requests
            if r.update.get("status") in FINISHED_STATUSES
            and r.filters
            and any(key in r.filters for key in _UNFINISHED_FILTERS)
            and r.filters.get("is_finished", False) is False
            and "close_status" not in r.update
        ]
        if len(fast) != len(requests):
            return super().update_many_by_id_and_settle(requests)
        if all(r.top_level for r in requests) and not connections[self.using].in_atomic_block:
            return self._settle_top_level(requests)
        return self._settle_families(requests)

    def _settle_top_level(self, requests: Sequence[SettleRequest]) -> list[SettleResult]:
        """Rows without a parent have no family to report to: each group's ``UPDATE`` runs
        alone, in autocommit (one round trip instead of ``BEGIN``, ``UPDATE``, ``COMMIT``).
        It only matches rows that really have no parent; a request it did not match (a wrong
        hint, or a row that no longer matches its filters) goes through the family's
        transaction, which gives the answer either way."""
        results: list[SettleResult] = [SettleResult(updated=False) for _ in requests]
        for (update_keys, filter_keys, _), indexes in self._groups(requests):
            sql, params = self._finish_statement(
                requests, indexes, update_keys, filter_keys, top_level=True
            )
            # Nothing to hand on (no parent): the new close status says all that is needed.
            finished = dict(
                self._execute(f"{sql} RETURNING t.execution_id, t.close_status", params)
            )
            for index in indexes:
                close_status = finished.get(requests[index].execution_id)
                if close_status is not None:
                    results[index] = SettleResult(
                        updated=True, needs_close=close_status == CloseStatus.READY
                    )
        missed = [index for index, result in enumerate(results) if not result.updated]
        if missed:
            retried = self._settle_families([requests[index] for index in missed])
            for index, result in zip(missed, retried, strict=True):
                results[index] = result
        return results

    @staticmethod
    def _groups(
        requests: Sequence[SettleRequest],
    ) -> list[tuple[tuple[tuple[str, ...], tuple[str, ...], int], list[int]]]:
        """The requests by update shape, in the order their statements run: a row written
        twice in one batch goes into a second statement, so that the writes apply one after
        the other."""
        groups: dict[tuple[tuple[str, ...], tuple[str, ...], int], list[int]] = {}
        seen: Counter[str] = Counter()
        for index, request in enumerate(requests):
            occurrence = seen[request.execution_id]
            seen[request.execution_id] += 1
            key = (tuple(request.update), tuple(request.filters or ()), occurrence)
            groups.setdefault(key, []).append(index)
        return sorted(groups.items(), key=lambda item: item[0][2])

    def _settle_families(self, requests: Sequence[SettleRequest]) -> list[SettleResult]:
        with self._atomic():
            self._lock_families(requests)
            results: list[SettleResult] = [SettleResult(updated=False) for _ in requests]
            rows: list[TaskExecution | None] = [None] * len(requests)
            for (update_keys, filter_keys, _), indexes in self._groups(requests):
                self._finish_rows(requests, indexes, update_keys, filter_keys, results, rows)
            self._report_to_parents(requests, results, rows)
        return results

    def _lock_families(self, requests: Sequence[SettleRequest]) -> None:
        """The locks of :meth:`OrmStorage._lock_batch` in two plain statements (it runs for
        every batch of a family)."""
        if len(requests) < 2:
            return
        lock = (
            f"SELECT parent_execution_id FROM {_TABLE} WHERE execution_id = ANY(%s) "
            "ORDER BY execution_id FOR UPDATE"
        )
        rows = self._execute(lock, [sorted({r.execution_id for r in requests})])
        parent_ids = {parent_id for (parent_id,) in rows if parent_id}
        if parent_ids:
            self._execute(lock, [sorted(parent_ids)])

    def _finish_rows(
        self,
        requests: Sequence[SettleRequest],
        indexes: list[int],
        update_keys: tuple[str, ...],
        filter_keys: tuple[str, ...],
        results: list[SettleResult],
        rows: list[TaskExecution | None],
    ) -> None:
        """Finish a group of requests with :meth:`_finish_statement` and record each row that
        matched in ``results`` and ``rows`` (a finished finalize hands its result on)."""
        sql, params = self._finish_statement(requests, indexes, update_keys, filter_keys)
        by_id = {row.execution_id: row for row in self._raw(sql, params)}
        for index in indexes:
            request = requests[index]
            row = by_id.get(request.execution_id)
            if row is None:
                continue
            result = results[index] = SettleResult(
                updated=True, needs_close=row.close_status == CloseStatus.READY, finished_row=row
            )
            rows[index] = row
            if row.is_finalize_of_parent and row.parent_execution_id and not result.needs_close:
                now: datetime = request.update["updated_at"]
                self._hand_result_to_parent(row, now, request.processing_expires_at, result)

    def _finish_statement(
        self,
        requests: Sequence[SettleRequest],
        indexes: list[int],
        update_keys: tuple[str, ...],
        filter_keys: tuple[str, ...],
        *,
        top_level: bool = False,
    ) -> tuple[str, list[Any]]:
        """``UPDATE … SET <update>, close_status = ready|closed … FROM unnest(<arrays>) v WHERE
        execution_id = v.id AND <filters>``: finishes every row of a group of requests with the
        same update and filter fields in one statement, and closes each row that has nothing
        left to propagate (completed, or no children and no finalize). ``top_level`` adds
        ``AND parent_execution_id IS NULL``.

        The values travel as one array per column, so the statement's text and its number of
        parameters do not grow with the batch: psycopg parses it once and caches it. A lone
        request sends plain values (``FROM (VALUES (…))``), cheaper to adapt than arrays.
        """
        connection = connections[self.using]
        types = _finish_types(self.using, update_keys, filter_keys)
        arrays: list[list[Any]] = [[] for _ in types]
        for index in indexes:
            request = requests[index]
            arrays[0].append(request.execution_id)
            for position, name in enumerate(update_keys, start=1):
                value = _db_value(_FIELDS[name], request.update[name], connection)
                arrays[position].append(value)
            for position, name in enumerate(filter_keys, start=1 + len(update_keys)):
                arrays[position].append((request.filters or {})[name])  # type: ignore[literal-required]
        single = len(indexes) == 1
        sql = _finish_sql(self.using, update_keys, filter_keys, top_level, single)
        if single:
            return sql, [*(array[0] for array in arrays), arrays[0][0]]
        return sql, [*arrays, arrays[0]]

    def _report_to_parents(
        self,
        requests: Sequence[SettleRequest],
        results: list[SettleResult],
        rows: list[TaskExecution | None],
    ) -> None:
        """``UPDATE … SET active_children_count = active_children_count - v.n, <claim the parent
        for processing when it reaches 0> FROM unnest(…) v WHERE execution_id = v.parent``."""
        decrements: Counter[str] = Counter()
        owner: dict[str, int] = {}
        for index, row in enumerate(rows):
            if row is None:
                continue
            parent_id = row.parent_execution_id
            if parent_id and not row.is_finalize_of_parent:
                decrements[parent_id] += 1
                # A batch mixes requests with and without a lease (a cancel has none): the
                # parent goes to a request that brought a lease, whose caller processes it.
                if parent_id not in owner or (
                    requests[owner[parent_id]].processing_expires_at is None
                    and requests[index].processing_expires_at is not None
                ):
                    owner[parent_id] = index
        if not decrements:
            return
        now = requests[0].update["updated_at"]
        parent_ids = sorted(decrements)
        counts = [decrements[parent_id] for parent_id in parent_ids]
        leases = [requests[owner[parent_id]].processing_expires_at for parent_id in parent_ids]
        claim = (
            "t.active_children_count - v.n = 0 AND t.status = 'waiting_for_children' "
            "AND t.on_children_finished_processing_status = 'idle' AND v.lease IS NOT NULL"
        )
        sql = (
            f"UPDATE {_TABLE} AS t SET active_children_count = t.active_children_count - v.n, "
            "updated_at = %s, "
            f"on_children_finished_processing_status = CASE WHEN {claim} THEN 'processing' "
            "ELSE t.on_children_finished_processing_status END, "
            f"on_children_finished_processing_expires_at = CASE WHEN {claim} THEN v.lease "
            "ELSE t.on_children_finished_processing_expires_at END "
            "FROM unnest(%s::text[], %s::integer[], %s::timestamptz[]) AS v(parent_id, n, lease) "
            "WHERE t.execution_id = v.parent_id"
        )
        parents = self._raw(sql, [now, parent_ids, counts, leases])
        for parent in parents:
            lease = requests[owner[parent.execution_id]].processing_expires_at
            claimed = (
                lease is not None
                and parent.on_children_finished_processing_status == "processing"
                and parent.on_children_finished_processing_expires_at == lease
                and parent.active_children_count == 0
            )
            if claimed:
                results[owner[parent.execution_id]].parents_to_process.append(parent)
