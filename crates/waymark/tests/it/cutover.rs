//! `cutover verify`: two databases compared table by table and range by
//! range, every kind of difference named with its range and sample keys.

use crate::common::{Kind, Project, TestDb, each_dialect};

fn schema(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT, balance INT);\n\
             INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 1000) g;\n\
             CREATE INDEX accounts_owner ON accounts (owner);\n\
             CREATE TABLE notes (a INT, b TEXT);\n\
             INSERT INTO notes SELECT g % 3, 'n' || g FROM generate_series(1, 10) g;\n\
             CREATE TABLE tags (id INT PRIMARY KEY, name TEXT);\n\
             CREATE TABLE events (id BIGSERIAL PRIMARY KEY, what TEXT);\n\
             INSERT INTO events (what) SELECT 'e' || g FROM generate_series(1, 20) g;\n"
        }
        Kind::Mysql => {
            "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(40), balance INT);\n\
             INSERT INTO accounts WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 1000) \
             SELECT g, CONCAT('owner ', g), g * 10 FROM s;\n\
             CREATE INDEX accounts_owner ON accounts (owner);\n\
             CREATE TABLE notes (a INT, b VARCHAR(20));\n\
             INSERT INTO notes WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 10) \
             SELECT g % 3, CONCAT('n', g) FROM s;\n\
             CREATE TABLE tags (id INT PRIMARY KEY, name VARCHAR(20));\n"
        }
        Kind::Sqlite => {
            "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT, balance INT);\n\
             INSERT INTO accounts WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 1000) \
             SELECT g, 'owner ' || g, g * 10 FROM s;\n\
             CREATE INDEX accounts_owner ON accounts (owner);\n\
             CREATE TABLE notes (a INT, b TEXT);\n\
             INSERT INTO notes WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 10) \
             SELECT g % 3, 'n' || g FROM s;\n\
             CREATE TABLE tags (id INT PRIMARY KEY, name TEXT);\n"
        }
    }
}

/// A key as the comparison names it: each dialect quotes as it quotes.
fn key(kind: Kind, n: u32) -> String {
    match kind {
        Kind::Sqlite => format!("({n})"),
        _ => format!("('{n}')"),
    }
}

/// Migrates `source`, then fills `target` the way a cutover fills it: from
/// a backup of the source.
fn fill_from_backup(p: &Project, source: &TestDb, target: &TestDb) {
    p.run(source, &["up"]).ok();
    p.run(source, &["backup", "create"]).ok();
    let set = std::fs::read_dir(p.dir.path().join("backups"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    p.run(
        source,
        &["backup", "restore", set.to_str().unwrap(), "--to", &target.url],
    )
    .ok();
}

each_dialect!(verify_names_every_difference_by_range_and_key);

fn verify_names_every_difference_by_range_and_key(kind: Kind) {
    let source = TestDb::new(kind);
    let target = TestDb::new(kind);
    let p = Project::new();
    p.migration("1_schema", schema(kind), None);
    fill_from_backup(&p, &source, &target);
    let verify = |extra: &[&str]| {
        let mut args = vec!["cutover", "verify", "--source", &source.url, "--target", &target.url];
        args.extend_from_slice(extra);
        p.run(&source, &args)
    };
    let same = verify(&["--range-rows", "100", "--json"]).ok();
    let json = same.json();
    assert_eq!(json["ok"], true, "{json}");
    let accounts = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"].as_str().unwrap().ends_with("accounts"))
        .unwrap();
    assert_eq!(accounts["rows"], 1000);
    assert_eq!(accounts["ranges"], 11, "ten full ranges and the open end");
    assert!(same.stderr.contains("holds the same as"), "{}", same.stderr);

    // Changes behind the source's back.
    target.execute("UPDATE accounts SET balance = 0 WHERE id = 500");
    target.execute("DELETE FROM accounts WHERE id = 700");
    target.execute("INSERT INTO accounts VALUES (5000, 'stranger', 1)");
    target.execute("INSERT INTO notes VALUES (9, 'extra')");
    target.execute("ALTER TABLE tags ADD COLUMN color INT");
    target.execute("CREATE TABLE extra (id INT)");
    target.execute(match kind {
        Kind::Mysql => "DROP INDEX accounts_owner ON accounts",
        _ => "DROP INDEX accounts_owner",
    });
    target.execute("CREATE INDEX notes_a ON notes (a)");
    let run = verify(&["--range-rows", "100"]).code(3);
    let out = &run.stdout;
    let t = |name: &str| match kind {
        Kind::Postgres => format!("table public.{name}"),
        _ => format!("table {name}"),
    };
    let expected = [
        format!(
            "{}: rows with keys after {} up to {}: 100 rows on each side, with different contents; different: {}",
            t("accounts"),
            key(kind, 400),
            key(kind, 500),
            key(kind, 500)
        ),
        format!(
            "{}: rows with keys after {} up to {}: 100 rows on the source, 99 on the target; missing on the target: {}",
            t("accounts"),
            key(kind, 600),
            key(kind, 700),
            key(kind, 700)
        ),
        format!(
            "{}: rows with keys after {} up to the end: 0 rows on the source, 1 on the target; only on the target: {}",
            t("accounts"),
            key(kind, 1000),
            key(kind, 5000)
        ),
        format!(
            "{}: all rows (it has no primary key): 10 rows on the source, 11 on the target",
            t("notes")
        ),
        format!("{}: its columns differ: the source has (id ", t("tags")),
        format!("{}: only on the target", t("extra")),
        match kind {
            Kind::Postgres => "index public.accounts_owner: missing on the target".to_owned(),
            Kind::Mysql => "index accounts.accounts_owner: missing on the target".to_owned(),
            Kind::Sqlite => "index accounts_owner: missing on the target".to_owned(),
        },
        match kind {
            Kind::Postgres => "index public.notes_a: only on the target".to_owned(),
            Kind::Mysql => "index notes.notes_a: only on the target".to_owned(),
            Kind::Sqlite => "index notes_a: only on the target".to_owned(),
        },
    ];
    for line in &expected {
        assert!(out.contains(line.as_str()), "lacks {line:?}:\n{out}");
    }
    assert_eq!(out.lines().count(), expected.len(), "nothing else differs:\n{out}");
    assert!(run.stderr.contains("differs from"), "{}", run.stderr);
}

#[test]
fn verify_compares_sequences_and_refuses_two_kinds() {
    let source = TestDb::new(Kind::Postgres);
    let target = TestDb::new(Kind::Postgres);
    let p = Project::new();
    p.migration("1_schema", schema(Kind::Postgres), None);
    fill_from_backup(&p, &source, &target);
    // The source moves on; the target's sequence stays behind.
    source.execute("SELECT nextval('events_id_seq')");
    let run = p
        .run(
            &source,
            &["cutover", "verify", "--source", &source.url, "--target", &target.url],
        )
        .code(3);
    assert_eq!(
        run.stdout.trim(),
        "sequence public.events_id_seq: at 21 on the source, 20 on the target"
    );
    let sqlite = TestDb::new(Kind::Sqlite);
    p.run(
        &source,
        &["cutover", "verify", "--source", &source.url, "--target", &sqlite.url],
    )
    .code(2)
    .stderr_has("only two databases of the same kind compare");
}
