"""mask: a waymark step, written in Python, that masks personal data.

For copies of production: it overwrites the named columns of every row
with values derived from the row's key, in batches, so a staging or
analytics copy keeps its shape and its joins but none of the people.

    component = "mask.wasm"
    sha256 = "..."
    transaction = "batches"

    [permissions]
    write = ["users"]

    [config]
    table = "users"
    key = "id"                    # an integer key
    batch_size = 500              # default 500

    [config.columns]
    email = "email"               # user<key>@example.invalid
    name = "redact"               # 'redacted'
    phone = "null"                # NULL

Masking destroys what it replaces, so the step is irreversible.

Built with componentize-py against waymark's WIT; see README.md.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import database, environment, log, types

STRATEGIES = ("email", "redact", "null")


def invalid(message):
    return Err(types.StepError_InvalidInput(types.InputError(line=0, message=message)))


def config():
    try:
        c = json.loads(environment.config())
    except ValueError as e:
        raise invalid(f"step.toml [config]: {e}")
    for field in ("table", "key", "columns"):
        if field not in c:
            raise invalid(f"step.toml [config]: missing field `{field}`")
    for column, strategy in c["columns"].items():
        if strategy not in STRATEGIES:
            raise invalid(
                f"step.toml [config.columns] {column} = {strategy!r}: expected one of {', '.join(STRATEGIES)}"
            )
    c.setdefault("batch_size", 500)
    return c


def quote(name):
    if database.current_dialect() == types.Dialect.MYSQL:
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def placeholder(n):
    return f"${n}" if database.current_dialect() == types.Dialect.POSTGRES else "?"


def assignment(column, strategy, key):
    if strategy == "null":
        return f"{quote(column)} = NULL"
    if strategy == "redact":
        return f"{quote(column)} = 'redacted'"
    # email: built from the key, so it stays unique if the original was.
    concat = {
        types.Dialect.MYSQL: f"CONCAT('user', {quote(key)}, '@example.invalid')",
    }.get(database.current_dialect(), f"'user' || {quote(key)} || '@example.invalid'")
    return f"{quote(column)} = {concat}"


def statements(c):
    table, key = quote(c["table"]), quote(c["key"])
    sets = ", ".join(assignment(col, s, c["key"]) for col, s in sorted(c["columns"].items()))
    select = f"SELECT {key} FROM {table} WHERE {key} > {placeholder(1)} ORDER BY {key} LIMIT {int(c['batch_size'])}"
    update = f"UPDATE {table} SET {sets} WHERE {key} > {placeholder(1)} AND {key} <= {placeholder(2)}"
    return select, update


def failed(e):
    return Err(types.StepError_Statement(types.StatementError(line=0, error=e.value)))


class Step(exports.Step):
    def describe(self):
        try:
            c = config()
            summary = f"Masks {', '.join(sorted(c['columns']))} of {c['table']}, in batches of {c['batch_size']}."
        except Err:
            summary = "Masks personal data in the configured columns, in batches."
        return types.Description(name="mask", version="0.1.0", summary=summary, reversible=False)

    def plan(self, direction, input):
        if direction == types.Direction.DOWN:
            raise Err(types.StepError_Other("mask cannot be reverted: it destroys what it replaces"))
        select, update = statements(config())
        return [
            types.Action(line=0, text=f"repeat until no keys are left: {select}"),
            types.Action(line=0, text=update),
        ]

    def up(self, input):
        c = config()
        select, update = statements(c)
        checkpoint = environment.resume_from()
        last = int(checkpoint) if checkpoint is not None else -(2**63)
        if checkpoint is not None:
            log.log(log.Level.INFO, f"resuming after key {last}")
        done = 0
        try:
            while True:
                rows = database.query(select, [types.Value_Integer(last)]).rows
                if not rows:
                    break
                end = rows[-1][0].value
                database.execute(update, [types.Value_Integer(last), types.Value_Integer(end)])
                done += len(rows)
                last = end
                database.commit(str(last))
                environment.progress(done, None)
        except Err as e:
            raise failed(e)
        log.log(log.Level.INFO, f"masked {done} rows of {c['table']}")

    def down(self, input):
        raise Err(types.StepError_Other("mask cannot be reverted: it destroys what it replaces"))
