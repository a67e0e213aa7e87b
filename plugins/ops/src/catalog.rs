//! What the operations read from PostgreSQL's catalog: the schema's
//! tables and columns, a table's key, and what depends on a column.

use waymark_plugin_sdk::{StepError, Value, db};

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    /// `format_type`: `integer`, `character varying(20)`, ...
    pub(crate) type_: String,
    pub(crate) not_null: bool,
    pub(crate) default: Option<String>,
}

/// An index as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub(crate) name: String,
    /// `pg_get_indexdef`: a whole `CREATE [UNIQUE] INDEX` statement.
    pub(crate) definition: String,
    /// The columns it reads: keys, `INCLUDE`d, in expressions and in its
    /// predicate (`pg_depend`), in the table's order; empty for an index
    /// behind a constraint, whose columns the constraint names.
    pub(crate) columns: Vec<String>,
    /// The primary key, unique or exclusion constraint it enforces.
    pub(crate) constraint: Option<String>,
}

/// A table, its columns in order and its indexes.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) indexes: Vec<Index>,
}

impl Table {
    pub(crate) fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The tables of one schema.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    pub(crate) tables: Vec<Table>,
}

impl Catalog {
    /// Reads the ordinary and partitioned tables of `schema`, leaving out
    /// waymark's own (names starting with `history`).
    pub(crate) fn read(schema: &str, history: &str) -> Result<Self, StepError> {
        let rows = db::query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY c.relname, a.attnum",
            &[Value::from(schema)],
        )?;
        let mut tables: Vec<Table> = Vec::new();
        for row in &rows.rows {
            let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or_default().to_owned();
            let table = text(0);
            if !history.is_empty() && table.starts_with(history) {
                continue;
            }
            let column = Column {
                name: text(1),
                type_: text(2),
                not_null: matches!(row.get(3), Some(Value::Boolean(true))),
                default: row.get(4).and_then(Value::as_str).map(str::to_owned),
            };
            match tables.last_mut() {
                Some(t) if t.name == table => t.columns.push(column),
                _ => tables.push(Table {
                    name: table,
                    columns: vec![column],
                    indexes: Vec::new(),
                }),
            }
        }
        let mut catalog = Catalog { tables };
        catalog.read_indexes(schema)?;
        Ok(catalog)
    }

    /// Each table's indexes, one row per index and column it reads.
    fn read_indexes(&mut self, schema: &str) -> Result<(), StepError> {
        let rows = db::query(
            "SELECT t.relname::text, ci.relname::text, pg_get_indexdef(i.indexrelid), con.conname::text, \
                    a.attname::text \
             FROM pg_index i \
             JOIN pg_class ci ON ci.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
                  AND con.contype IN ('p', 'u', 'x') \
             LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid \
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid AND d.refobjsubid > 0 \
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = d.refobjsubid \
             WHERE n.nspname = $1 AND t.relkind IN ('r', 'p') AND NOT t.relispartition \
             ORDER BY 1, 2, a.attnum",
            &[Value::from(schema)],
        )?;
        for row in &rows.rows {
            let text = |i: usize| row.get(i).and_then(Value::as_str).map(str::to_owned);
            let (Some(table), Some(name)) = (text(0), text(1)) else {
                continue;
            };
            let Some(table) = self.tables.iter_mut().find(|t| t.name == table) else {
                continue;
            };
            if table.indexes.last().is_none_or(|i| i.name != name) {
                table.indexes.push(Index {
                    name,
                    definition: text(2).unwrap_or_default(),
                    columns: Vec::new(),
                    constraint: text(3),
                });
            }
            if let (Some(index), Some(column)) = (table.indexes.last_mut(), text(4)) {
                index.columns.push(column);
            }
        }
        Ok(())
    }

    pub(crate) fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Whether index `name` of `schema` is valid (`indisvalid`): `None` when
/// there is none, `Some(false)` for a concurrent build that stopped.
pub(crate) fn index_valid(schema: &str, name: &str) -> Result<Option<bool>, StepError> {
    let rows = db::query(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        &[Value::from(schema), Value::from(name)],
    )?;
    Ok(rows
        .rows
        .first()
        .map(|r| matches!(r.first(), Some(Value::Boolean(true)))))
}

/// `pg_get_indexdef` of index `name` of `schema`, if there is one.
pub(crate) fn index_definition(schema: &str, name: &str) -> Result<Option<String>, StepError> {
    let rows = db::query(
        "SELECT pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'i'",
        &[Value::from(schema), Value::from(name)],
    )?;
    Ok(rows.scalar().and_then(Value::as_str).map(str::to_owned))
}

/// `table`'s primary key, when it is one column: its name and type.
pub(crate) fn single_key(qualified: &str) -> Result<Option<(String, String)>, StepError> {
    let rows = db::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = $1::regclass AND i.indisprimary",
        &[Value::from(qualified)],
    )?;
    if rows.rows.len() != 1 {
        return Ok(None);
    }
    let row = &rows.rows[0];
    let text = |i: usize| row.get(i).and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(Some((text(0), text(1))))
}

/// The constraints that name `column` of `qualified` (its own, and
/// foreign keys of other tables pointing at it). Indexes are not among
/// them: those not behind a constraint are built again over a changed
/// column's new shape (`twin`).
pub(crate) fn constraints_on(qualified: &str, column: &str) -> Result<Vec<String>, StepError> {
    let rows = db::query(
        "SELECT c.conname::text FROM pg_constraint c \
           JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attname = $2 \
          WHERE c.contype IN ('c', 'f', 'u', 'p', 'x') \
            AND ((c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey)) \
              OR (c.confrelid = a.attrelid AND a.attnum = ANY (c.confkey))) \
         ORDER BY 1",
        &[Value::from(qualified), Value::from(column)],
    )?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| r.first().and_then(Value::as_str).map(str::to_owned))
        .collect())
}
