//! `ops.toml` on MySQL/MariaDB and SQLite, which have no version schemas:
//! the operations run at once, `up` to applied and `down` back, with
//! MySQL/MariaDB's online algorithms written out, and what a dialect
//! could do only by copying or rebuilding the table refused with the
//! reason and the alternative, the database left as it was.

use crate::common::{Kind, Project, TestDb};

fn users(p: &Project, db: &TestDb) {
    p.migration(
        "1_users",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, email VARCHAR(50), legacy INTEGER);\n\
         INSERT INTO users (id, name, email, legacy) VALUES (1, 'ann', 'ann@x', 7), (2, 'bob', NULL, 8);",
        Some("DROP TABLE users;"),
    );
    p.run(db, &["up"]).ok();
}

/// Operations each dialect does in place, undone by `down`.
const IN_PLACE: &str = r#"[[op]]
op = "add_column"
table = "users"
column = "active"
type = "INTEGER"
default = "1"
not_null = true

[[op]]
op = "rename_column"
table = "users"
column = "name"
to = "full_name"

[[op]]
op = "create_table"
table = "audit"
columns = ["id INTEGER PRIMARY KEY", "note VARCHAR(40)"]

[[op]]
op = "rename_table"
table = "audit"
to = "audit_log"
"#;

fn in_place_operations_apply_at_once_and_down_reverts_them(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    users(&p, &db);
    let before = db.snapshot();
    p.file("migrations/2_reshape/ops.toml", IN_PLACE);

    let plan = p.run(&db, &["plan"]).ok();
    if kind == Kind::Mysql {
        assert!(
            plan.stdout.contains(
                "ALTER TABLE `users` ADD COLUMN `active` INTEGER DEFAULT 1 NOT NULL, ALGORITHM=INSTANT -- else ALGORITHM=INPLACE, LOCK=NONE; never a copy"
            ),
            "{}",
            plan.stdout
        );
    } else {
        assert!(
            plan.stdout
                .contains("ALTER TABLE \"users\" RENAME COLUMN \"name\" TO \"full_name\""),
            "{}",
            plan.stdout
        );
    }

    p.run(&db, &["up"]).ok().stderr_has("applied 2_reshape");
    // Applied, not expanded: there is nothing to complete.
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "applied".to_owned()));
    assert_eq!(
        db.rows("SELECT id, full_name, active FROM users ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("ann".into()), Some("1".into())],
            vec![Some("2".into()), Some("bob".into()), Some("1".into())],
        ]
    );
    db.execute("INSERT INTO audit_log (id, note) VALUES (1, 'kept')");
    assert!(db.tables().iter().all(|t| t != "audit"), "{:?}", db.tables());

    p.run(&db, &["down"]).ok().stderr_has("reverted 2_reshape");
    if kind == Kind::Sqlite {
        // SQLite keeps the table's text as its renames rewrote it (the
        // column's name comes back quoted): compare what it means.
        assert_eq!(db.tables(), ["users"]);
        assert_eq!(
            db.rows("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('users') ORDER BY cid"),
            vec![
                vec![
                    Some("id".into()),
                    Some("INTEGER".into()),
                    Some("0".into()),
                    None,
                    Some("1".into())
                ],
                vec![
                    Some("name".into()),
                    Some("VARCHAR(20)".into()),
                    Some("1".into()),
                    None,
                    Some("0".into())
                ],
                vec![
                    Some("email".into()),
                    Some("VARCHAR(50)".into()),
                    Some("0".into()),
                    None,
                    Some("0".into())
                ],
                vec![
                    Some("legacy".into()),
                    Some("INTEGER".into()),
                    Some("0".into()),
                    None,
                    Some("0".into())
                ],
            ]
        );
    } else {
        assert_eq!(db.snapshot(), before);
    }
    assert_eq!(
        db.rows("SELECT id, name FROM users ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("ann".into())],
            vec![Some("2".into()), Some("bob".into())],
        ]
    );
}

#[test]
fn in_place_operations_apply_at_once_and_down_reverts_them_mysql() {
    in_place_operations_apply_at_once_and_down_reverts_them(Kind::Mysql);
}

#[test]
fn in_place_operations_apply_at_once_and_down_reverts_them_sqlite() {
    in_place_operations_apply_at_once_and_down_reverts_them(Kind::Sqlite);
}

#[test]
fn column_changes_restate_the_whole_column_on_mysql() {
    let db = TestDb::new(Kind::Mysql);
    let p = Project::new();
    users(&p, &db);
    db.execute("ALTER TABLE users MODIFY name VARCHAR(20) NOT NULL DEFAULT 'nobody' COMMENT 'shown name'");
    p.file(
        "migrations/2_widen/ops.toml",
        "[[op]]\nop = \"alter_type\"\ntable = \"users\"\ncolumn = \"name\"\ntype = \"VARCHAR(40)\"\nup = \"name\"\ndown = \"name\"\n",
    );
    p.run(&db, &["up"]).ok();
    let widened = db.snapshot();
    p.file(
        "migrations/3_nulls/ops.toml",
        r#"[[op]]
op = "set_not_null"
table = "users"
column = "email"
up = "CONCAT(name, '@unknown')"

[[op]]
op = "drop_not_null"
table = "users"
column = "name"
down = "COALESCE(name, 'nobody')"
"#,
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(
        db.rows("SELECT id, email FROM users ORDER BY id"),
        vec![
            vec![Some("1".into()), Some("ann@x".into())],
            vec![Some("2".into()), Some("bob@unknown".into())],
        ]
    );
    let columns = |db: &TestDb| {
        db.rows(
            "SELECT column_name, column_type, is_nullable, column_default, column_comment FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'users' AND column_name IN ('name', 'email') ORDER BY 1",
        )
    };
    // The type and the nullability changed; the default and the comment
    // each MODIFY restated stayed.
    let name = |nullable: &str| {
        vec![
            Some("name".into()),
            Some("varchar(40)".into()),
            Some(nullable.into()),
            Some("'nobody'".into()),
            Some("shown name".into()),
        ]
    };
    assert_eq!(
        columns(&db),
        vec![
            vec![
                Some("email".into()),
                Some("varchar(50)".into()),
                Some("NO".into()),
                None,
                Some(String::new())
            ],
            name("YES"),
        ]
    );

    // `down` puts NOT NULL back on name, fixing the NULL the new version
    // wrote, and takes it off email.
    db.execute("INSERT INTO users (id, name, email) VALUES (3, NULL, 'c@x')");
    p.run(&db, &["down"]).ok().stderr_has("reverted 3_nulls");
    assert_eq!(db.snapshot(), widened);
    assert_eq!(
        db.rows("SELECT name FROM users WHERE id = 3"),
        vec![vec![Some("nobody".into())]]
    );

    // A type change cannot be undone: `down` says so and changes nothing.
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("ops.toml:1: alter_type users.name cannot be undone yet: its old type is gone with it");
    assert_eq!(db.history().last().unwrap(), &("2".to_owned(), "applied".to_owned()));
    assert_eq!(db.snapshot(), widened);
}

#[test]
fn what_mysql_would_copy_the_table_for_is_refused_with_the_servers_reason() {
    let db = TestDb::new(Kind::Mysql);
    let p = Project::new();
    users(&p, &db);
    let before = db.snapshot();
    p.file(
        "migrations/2_widen/ops.toml",
        r#"[[op]]
op = "alter_type"
table = "users"
column = "legacy"
type = "BIGINT"
up = "legacy"
down = "legacy"
"#,
    );
    p.run(&db, &["up"]).code(1).stderr_has(
        "ops.toml:1: change the type of users.legacy to BIGINT: MySQL/MariaDB can do this only by copying the table or blocking its writes, so waymark did not ask it to (the server said: ",
    ).stderr_has("gh-ost");
    assert_eq!(db.snapshot(), before);
    assert_eq!(
        db.rows("SELECT legacy FROM users ORDER BY id"),
        vec![vec![Some("7".into())], vec![Some("8".into())]]
    );

    // After an op that ran, the refusal says what stays done: MySQL's DDL
    // has committed.
    p.run(&db, &["repair", "--rolled-back"]).ok();
    std::fs::remove_dir_all(p.migrations().join("2_widen")).unwrap();
    p.file(
        "migrations/3_rename_widen/ops.toml",
        "[[op]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"name\"\nto = \"full_name\"\n\n\
         [[op]]\nop = \"alter_type\"\ntable = \"users\"\ncolumn = \"legacy\"\ntype = \"BIGINT\"\nup = \"legacy\"\ndown = \"legacy\"\n",
    );
    p.run(&db, &["up"]).code(1).stderr_has(
        "; these ops before it are done and stay (MySQL/MariaDB commits each ALTER): ops.toml:1 rename column users.name to full_name",
    );
    assert_eq!(
        db.rows("SELECT full_name FROM users WHERE id = 1"),
        vec![vec![Some("ann".into())]]
    );
}

#[test]
fn what_needs_versions_or_a_rebuild_is_refused_before_anything_runs() {
    for (kind, op, message) in [
        (
            Kind::Mysql,
            "op = \"add_column\"\ntable = \"users\"\ncolumn = \"domain\"\ntype = \"VARCHAR(50)\"\nup = \"email\"\n",
            "ops.toml:7: add_column users.domain: `up` is kept computed by a trigger while both versions run, which only PostgreSQL's expand/contract has; here add the column with a `default` and fill it in a batched migration of its own",
        ),
        (
            Kind::Sqlite,
            "op = \"set_not_null\"\ntable = \"users\"\ncolumn = \"email\"\nup = \"coalesce(email, '')\"\n",
            "ops.toml:7: set_not_null on users.email: SQLite can do this only by rebuilding the table; write the migration as up.sql and down.sql",
        ),
    ] {
        let db = TestDb::new(kind);
        let p = Project::new();
        users(&p, &db);
        let before = db.snapshot();
        // A first op the dialect can do: nothing of it runs either.
        p.file(
            "migrations/2_change/ops.toml",
            format!(
                "[[op]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"legacy\"\nto = \"old\"\n\n[[op]]\n{op}"
            ),
        );
        p.run(&db, &["plan"]).code(1).stderr_has(message);
        p.run(&db, &["up"]).code(1).stderr_has(message);
        assert_eq!(db.snapshot(), before);
        assert_eq!(db.history(), vec![("1".to_owned(), "applied".to_owned())]);
    }
}

fn indexes_are_made_and_dropped_at_once(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    users(&p, &db);
    db.execute("CREATE INDEX users_legacy ON users (legacy)");
    p.file(
        "migrations/2_index/ops.toml",
        "[[op]]\nop = \"create_index\"\ntable = \"users\"\nname = \"users_email\"\ncolumns = [\"email\"]\nunique = true\n",
    );
    let plan = p.run(&db, &["plan"]).ok();
    let shown = if kind == Kind::Mysql {
        "ALTER TABLE `users` ADD UNIQUE INDEX `users_email` (email), ALGORITHM=INSTANT -- else ALGORITHM=INPLACE, LOCK=NONE; never a copy"
    } else {
        "CREATE UNIQUE INDEX \"users_email\" ON \"users\" (email)"
    };
    assert!(plan.stdout.contains(shown), "{}", plan.stdout);
    let before = db.snapshot();
    p.run(&db, &["up"]).ok();
    assert!(db.snapshot().contains("users_email"), "{}", db.snapshot());
    p.run(&db, &["down"]).ok();
    assert_eq!(db.snapshot(), before);

    p.file(
        "migrations/3_drop/ops.toml",
        "[[op]]\nop = \"drop_index\"\ntable = \"users\"\nname = \"users_legacy\"\n",
    );
    p.run(&db, &["up"]).ok();
    assert!(!db.snapshot().contains("users_legacy"), "{}", db.snapshot());
    let after = db.snapshot();
    p.run(&db, &["down"])
        .code(1)
        .stderr_has("ops.toml:1: drop_index users_legacy cannot be undone yet");
    assert_eq!(db.snapshot(), after);
}

#[test]
fn indexes_are_made_and_dropped_at_once_mysql() {
    indexes_are_made_and_dropped_at_once(Kind::Mysql);
}

#[test]
fn indexes_are_made_and_dropped_at_once_sqlite() {
    indexes_are_made_and_dropped_at_once(Kind::Sqlite);
}

/// A unique constraint: MySQL/MariaDB's is an index built in place;
/// SQLite, which cannot add a constraint without a rebuild, gets the
/// unique index that enforces the same rule. Rows that break it fail
/// the `up` with the server's words, and nothing is left behind.
fn a_unique_constraint_is_added_at_once_and_duplicates_refuse_it(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    users(&p, &db);
    db.execute("INSERT INTO users (id, name) VALUES (3, 'ann')");
    p.file(
        "migrations/2_unique/ops.toml",
        "[[op]]\nop = \"add_constraint\"\ntable = \"users\"\nname = \"users_name_unique\"\ncolumns = [\"name\"]\nunique = true\n",
    );
    let plan = p.run(&db, &["plan"]).ok();
    let shown = if kind == Kind::Mysql {
        "ALTER TABLE `users` ADD CONSTRAINT `users_name_unique` UNIQUE (`name`), ALGORITHM=INSTANT -- else ALGORITHM=INPLACE, LOCK=NONE; never a copy"
    } else {
        "CREATE UNIQUE INDEX \"users_name_unique\" ON \"users\" (\"name\")"
    };
    assert!(plan.stdout.contains(shown), "{}", plan.stdout);

    let before = db.snapshot();
    let duplicate = if kind == Kind::Mysql {
        "Duplicate entry 'ann' for key 'users_name_unique'"
    } else {
        "UNIQUE constraint failed: users.name"
    };
    p.run(&db, &["up"])
        .code(1)
        .stderr_has("ops.toml:1")
        .stderr_has(duplicate);
    assert_eq!(db.snapshot(), before);
    assert!(!db.history().contains(&("2".to_owned(), "applied".to_owned())));
    if kind == Kind::Mysql {
        // Its DDL is not transactional: the failure is recorded, for a
        // person to say what stands.
        p.run(&db, &["repair", "--rolled-back"]).ok();
    }

    db.execute("DELETE FROM users WHERE id = 3");
    let before = db.snapshot();
    p.run(&db, &["up"]).ok();
    assert!(db.snapshot().contains("users_name_unique"), "{}", db.snapshot());
    p.run(&db, &["down"]).ok();
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_unique_constraint_is_added_at_once_and_duplicates_refuse_it_mysql() {
    a_unique_constraint_is_added_at_once_and_duplicates_refuse_it(Kind::Mysql);
}

#[test]
fn a_unique_constraint_is_added_at_once_and_duplicates_refuse_it_sqlite() {
    a_unique_constraint_is_added_at_once_and_duplicates_refuse_it(Kind::Sqlite);
}
