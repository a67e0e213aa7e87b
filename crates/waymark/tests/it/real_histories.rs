//! Histories as real projects write them: hundreds of migrations, function
//! bodies, triggers, DO blocks, DELIMITER, comments and strings full of
//! semicolons, files holding only comments.

use crate::common::{Kind, Project, TestDb};

fn postgres_migration(i: usize) -> (String, String) {
    let up = format!(
        r#"-- migration {i}: a table; a function; a trigger; a DO block
CREATE TABLE item_{i} (
    id BIGSERIAL PRIMARY KEY,
    label TEXT NOT NULL DEFAULT 'semi;colon',
    note TEXT DEFAULT E'it\'s; escaped',
    updated_at TIMESTAMPTZ
);

/* a block comment; /* nested; */ still a comment */
CREATE FUNCTION touch_{i}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now(); -- a statement inside the body;
    RETURN NEW;
END;
$$;

CREATE TRIGGER item_{i}_touch BEFORE UPDATE ON item_{i}
    FOR EACH ROW EXECUTE FUNCTION touch_{i}();

DO $do$
DECLARE n int;
BEGIN
    SELECT count(*) INTO n FROM item_{i};
    IF n = 0 THEN
        INSERT INTO item_{i} (label) VALUES ('seeded; by DO');
    END IF;
END
$do$;

CREATE FUNCTION add_{i}(a integer, b integer) RETURNS integer
    LANGUAGE SQL IMMUTABLE
    BEGIN ATOMIC
        SELECT a + b;
    END;
"#
    );
    let down = format!("DROP FUNCTION add_{i}(integer, integer);\nDROP TABLE item_{i};\nDROP FUNCTION touch_{i}();\n");
    (up, down)
}

#[test]
fn hundreds_of_postgres_migrations() {
    let db = TestDb::new(Kind::Postgres);
    let p = Project::new();
    for i in 1..=300 {
        let (up, down) = postgres_migration(i);
        p.migration(
            &format!("{:014}_item_{i}", 20_240_101_000_000u64 + i as u64),
            &up,
            Some(&down),
        );
    }
    p.migration(
        "20250101000000_only_comments",
        "-- nothing to do here;\n/* really; nothing */\n",
        // Said on purpose: a down of no statements is refused otherwise.
        Some("-- nothing\n-- waymark:empty-down: the up does nothing either\n"),
    );
    let empty = db.snapshot();
    p.run(&db, &["up", "-q"]).ok();
    assert_eq!(db.history().len(), 301);
    assert_eq!(
        db.rows("SELECT label FROM item_300"),
        [[Some("seeded; by DO".to_owned())]]
    );
    assert_eq!(db.rows("SELECT note FROM item_7"), [[Some("it's; escaped".to_owned())]]);
    assert_eq!(db.rows("SELECT add_42(40, 2)::text"), [[Some("42".to_owned())]]);
    p.run(&db, &["down", "--to", "0", "-q"]).ok();
    assert_eq!(db.snapshot(), empty);
}

#[test]
fn mysql_multi_statement_files_with_delimiter() {
    let db = TestDb::new(Kind::Mysql);
    let p = Project::new();
    p.migration(
        "1_accounts",
        "# a hash comment; with a semicolon\n\
         CREATE TABLE accounts (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50) DEFAULT 'a;b', balance INT NOT NULL DEFAULT 0);\n\
         CREATE TABLE audit_log (account_id INT, note VARCHAR(100));\n\
         INSERT INTO accounts (name) VALUES ('it\\'s; quoted'), (\"double; quoted\");\n\
         /*!40101 SET @legacy_hint = 1 */;\n\
         \n\
         DELIMITER $$\n\
         CREATE TRIGGER accounts_audit AFTER UPDATE ON accounts FOR EACH ROW\n\
         BEGIN\n\
           INSERT INTO audit_log VALUES (NEW.id, 'updated; yes');\n\
         END$$\n\
         CREATE PROCEDURE bump(IN amount INT)\n\
         BEGIN\n\
           UPDATE accounts SET balance = balance + amount;\n\
           SELECT COUNT(*) FROM accounts;\n\
         END$$\n\
         DELIMITER ;\n\
         CALL bump(5);\n",
        Some("DROP PROCEDURE bump;\nDROP TRIGGER accounts_audit;\nDROP TABLE audit_log;\nDROP TABLE accounts;\n"),
    );
    let empty = db.snapshot();
    p.run(&db, &["up"]).ok();
    assert_eq!(
        db.rows("SELECT name, CAST(balance AS CHAR) FROM accounts ORDER BY id"),
        [
            [Some("it's; quoted".to_owned()), Some("5".to_owned())],
            [Some("double; quoted".to_owned()), Some("5".to_owned())]
        ]
    );
    assert_eq!(db.rows("SELECT COUNT(*) FROM audit_log")[0][0].as_deref(), Some("2"));
    p.run(&db, &["down"]).ok();
    assert_eq!(db.snapshot(), empty);
}

#[test]
fn sqlite_triggers_with_bodies() {
    let db = TestDb::new(Kind::Sqlite);
    let p = Project::new();
    p.migration(
        "1_orders",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, size TEXT);\n\
         CREATE TABLE events (note TEXT);\n\
         CREATE TRIGGER orders_log AFTER INSERT ON orders\n\
         BEGIN\n\
           INSERT INTO events VALUES ('order; placed');\n\
           UPDATE orders SET size = CASE WHEN NEW.id > 10 THEN 'big' ELSE 'small' END WHERE id = NEW.id;\n\
         END;\n\
         INSERT INTO orders (id, status) VALUES (1, 'new'), (20, 'new');\n",
        Some("DROP TRIGGER orders_log;\nDROP TABLE events;\nDROP TABLE orders;\n"),
    );
    p.run(&db, &["up"]).ok();
    assert_eq!(
        db.rows("SELECT size FROM orders ORDER BY id"),
        [[Some("small".to_owned())], [Some("big".to_owned())]]
    );
    assert_eq!(db.rows("SELECT count(*) FROM events")[0][0].as_deref(), Some("2"));
    p.run(&db, &["redo"]).ok();
    p.run(&db, &["down"]).ok();
    assert!(db.tables().is_empty());
}
