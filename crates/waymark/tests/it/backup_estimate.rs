//! How long a backup will take, said before it starts: `backup create
//! --estimate` from the catalog and earlier sets, checked against the
//! backup it then times; the duration each set records, in `backup list`;
//! the bar's ETA on a terminal; and a set of the format before timings
//! (2), which still verifies, lists and restores.

use std::time::Instant;

use crate::common::{Kind, Project, TestDb, each_dialect, read_manifest, rewrite_manifest};
use crate::json_contract::conforms;

/// `rows` more rows of 200 characters each in `big`: 1,000 rows are about
/// 250 KB on disk.
fn grow(db: &TestDb, rows: u64) {
    db.execute(&format!(
        "INSERT INTO big (pad) SELECT repeat(md5(g::text), 6) || g FROM generate_series(1, {rows}) g; ANALYZE big;"
    ));
}

fn project() -> Project {
    let p = Project::new();
    p.migration(
        "1_big",
        "CREATE TABLE big (id BIGSERIAL PRIMARY KEY, pad TEXT NOT NULL);\n",
        None,
    );
    p
}

#[test]
fn an_estimate_learns_from_the_sets_before_it_and_comes_within_twice_the_real_time() {
    let db = TestDb::new(Kind::Postgres);
    let p = project();
    p.run(&db, &["up"]).ok();
    grow(&db, 150_000);

    // Nothing to learn from yet: the documented defaults, said to be so,
    // and nothing written.
    let first = p.run(&db, &["backup", "create", "--estimate", "--json"]).ok().json();
    conforms("backup-estimate", &first);
    assert_eq!(first["basis"], "assumed", "{first}");
    assert_eq!(first["sets"], 0);
    let big = first["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "public.big")
        .unwrap_or_else(|| panic!("{first}"));
    assert!(
        (140_000..=160_000).contains(&big["rows"].as_u64().unwrap()),
        "the catalog's estimate of the rows after ANALYZE: {big}"
    );
    let on_disk: u64 = db.rows("SELECT pg_table_size('big')")[0][0]
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(big["data_bytes"].as_u64().unwrap(), on_disk);
    assert!(big["index_bytes"].as_u64().unwrap() > 0, "the primary key: {big}");
    assert!(!p.dir.path().join("backups").exists(), "an estimate writes nothing");
    let text = p.run(&db, &["backup", "create", "--estimate"]).ok();
    assert!(text.stdout.contains("public.big"), "{}", text.stdout);
    assert!(text.stdout.contains("expect a set of about "), "{}", text.stdout);
    assert!(
        text.stdout.contains("assumed: ") && text.stdout.contains("documented defaults"),
        "{}",
        text.stdout
    );

    // The first set records its time and what the catalog said.
    let created = p.run(&db, &["backup", "create", "--json"]).ok().json();
    let took = created["duration_ms"].as_u64().unwrap_or_else(|| panic!("{created}"));
    let set = p.dir.path().join(created["dir"].as_str().unwrap());
    let manifest = read_manifest(&set);
    assert_eq!(manifest["format"], "waymark-backup/5");
    assert_eq!(manifest["timing"]["took_ms"].as_u64(), Some(took));
    assert!(manifest["timing"]["data_bytes"].as_u64().unwrap() >= on_disk);
    let listed = p.run(&db, &["backup", "list", "--json"]).ok().json();
    assert_eq!(listed["backups"][0]["duration_ms"].as_u64(), Some(took), "{listed}");
    let table = p.run(&db, &["backup", "list"]).ok();
    assert!(table.stdout.contains("TOOK"), "{}", table.stdout);
    let shown = if took < 1000 {
        format!("{took} ms")
    } else {
        format!("{:.1} s", took as f64 / 1000.0)
    };
    assert!(table.stdout.contains(&shown), "{shown} in {}", table.stdout);

    // Twice the rows: the estimate now stands on that set, and the backup
    // it estimates takes between half and twice as long as it says.
    grow(&db, 150_000);
    let second = p.run(&db, &["backup", "create", "--estimate", "--json"]).ok().json();
    assert_eq!(second["basis"], "earlier", "{second}");
    assert_eq!(second["sets"], 1);
    assert_eq!(second["newest"].as_str(), set.file_name().unwrap().to_str());
    let expected = second["duration_ms"].as_u64().unwrap() as f64;
    let started = Instant::now();
    let created = p.run(&db, &["backup", "create", "--json"]).ok().json();
    let real = started.elapsed().as_millis() as f64;
    assert!(
        (0.5..=2.0).contains(&(expected / real)),
        "estimated {expected} ms, took {real} ms: {second}"
    );
    let set = p.dir.path().join(created["dir"].as_str().unwrap());
    let manifest = read_manifest(&set);
    let raw: u64 = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["chunks"].as_array().unwrap())
        .map(|c| c["raw_bytes"].as_u64().unwrap())
        .sum();
    let estimated_raw = second["raw_bytes"].as_u64().unwrap() as f64;
    assert!(
        (0.5..=2.0).contains(&(estimated_raw / raw as f64)),
        "estimated {estimated_raw} bytes of rows, read {raw}"
    );
}

/// Each dialect's catalog sizes its tables, and the estimate says how it
/// was made; `--tables` narrows it, and a table that does not exist is
/// refused by name.
fn the_catalog_sizes_the_tables(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration(
        "1_items",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL);\n\
         CREATE INDEX items_name ON items (name);\n\
         CREATE TABLE other (id INTEGER PRIMARY KEY);\n",
        None,
    );
    p.run(&db, &["up"]).ok();
    let values: Vec<String> = (1..=2000)
        .map(|i| format!("({i}, 'item number {i} of two thousand')"))
        .collect();
    db.execute(&format!("INSERT INTO items (id, name) VALUES {}", values.join(", ")));
    if kind == Kind::Mysql {
        db.execute("ANALYZE TABLE items");
    } else {
        db.execute("ANALYZE");
    }
    let e = p
        .run(&db, &["backup", "create", "--estimate", "--tables", "items", "--json"])
        .ok()
        .json();
    conforms("backup-estimate", &e);
    let tables = e["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "only --tables: {e}");
    let items = &tables[0];
    assert!(items["name"].as_str().unwrap().ends_with("items"), "{e}");
    let rows = items["rows"].as_u64().unwrap();
    assert!((1000..=4000).contains(&rows), "about 2,000 rows: {e}");
    assert!(items["data_bytes"].as_u64().unwrap() >= 16 * 1024, "{e}");
    assert!(items["index_bytes"].as_u64().unwrap() > 0, "items_name: {e}");
    assert!(e["duration_ms"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(e["basis"], "assumed");

    let run = p
        .run(&db, &["backup", "create", "--estimate", "--tables", "nothing_here"])
        .code(1);
    assert!(
        run.stderr.contains("--tables: there is no table \"nothing_here\""),
        "{}",
        run.stderr
    );
    assert!(!p.dir.path().join("backups").exists(), "an estimate writes nothing");
}

each_dialect!(the_catalog_sizes_the_tables);

/// A database managed by something else, or by nothing, is backed up from
/// a folder with no migrations: no backup command reads them.
#[test]
fn a_backup_needs_no_migrations_folder() {
    let db = TestDb::new(Kind::Postgres);
    db.execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)");
    let p = Project::new();
    std::fs::remove_dir(p.migrations()).unwrap();
    let e = p.run(&db, &["backup", "create", "--estimate", "--json"]).ok().json();
    assert_eq!(e["tables"][0]["name"], "public.t", "{e}");
    let created = p.run(&db, &["backup", "create", "--json"]).ok().json();
    assert_eq!(created["tables"], 1, "{created}");
    assert_eq!(created["migration"], serde_json::Value::Null);
    let set = p.dir.path().join(created["dir"].as_str().unwrap());
    p.run(&db, &["backup", "verify", "--deep", set.to_str().unwrap()]).ok();
    assert!(!p.migrations().exists(), "no migrations folder was made");
    // Commands that do read the migrations still say which folder is missing.
    let run = p.run(&db, &["status"]).code(2);
    assert!(run.stderr.contains("migrations"), "{}", run.stderr);
}

#[test]
fn the_bar_shows_an_eta_from_the_start_on_a_terminal() {
    let db = TestDb::new(Kind::Postgres);
    let p = project();
    p.run(&db, &["up"]).ok();
    grow(&db, 200_000);
    let drawn = p.drawn_on_a_terminal(Some(&db.url), "backup create");
    // Each frame: table and rows, bytes of the expected total, and an ETA
    // that is a time, never unknown.
    let frames: Vec<&str> = drawn
        .split(['\r', '\n'])
        .filter(|l| l.contains("public.big (") && l.contains(" eta "))
        .collect();
    assert!(!frames.is_empty(), "no frame drawn: {drawn}");
    for frame in &frames {
        assert!(frame.contains(" MiB/"), "{frame}");
        assert!(!frame.contains("eta ?"), "an ETA from the first frame: {frame}");
    }
    // The total is known from the first frame (the catalog's sizes), not
    // grown with the progress; no frame is drawn half set. Once the table
    // is done the total is corrected, once, to what it held, and frames
    // drawn then (on a busy machine, before the next table starts) show it.
    let totals: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.split_once(" MiB/")?.1.split_once(" MiB ("))
        .map(|(total, _)| total)
        .collect();
    let changes = totals.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes <= 1, "{totals:?}");
    let first: f64 = frames[0]
        .split_once("] ")
        .unwrap()
        .1
        .split_once(" MiB/")
        .unwrap()
        .0
        .parse()
        .unwrap();
    assert!(first < totals[0].parse::<f64>().unwrap() / 2.0, "{}", frames[0]);
    assert!(!drawn.contains("0 B/0 B") && !drawn.contains("eta )"), "{drawn}");
    assert!(drawn.contains("and verified"), "{drawn}");
}

/// Writes `manifest` into `set` as its manifest, its own digest made anew.
#[test]
fn a_set_of_format_2_still_verifies_lists_and_restores() {
    let db = TestDb::new(Kind::Sqlite);
    let p = project();
    p.run(&db, &["up"]).ok();
    db.execute("INSERT INTO big (pad) VALUES ('a'), ('b'), ('c')");
    let created = p.run(&db, &["backup", "create", "--json"]).ok().json();
    let set = p.dir.path().join(created["dir"].as_str().unwrap());
    // What a waymark before format 3 wrote: no timing, and no sums of the
    // tables' rows (format 4), so the restore checks by key, chunk by chunk.
    let mut manifest = read_manifest(&set);
    let object = manifest.as_object_mut().unwrap();
    object.remove("manifest_sha256");
    object.remove("timing").expect("format 3 records the timing");
    for table in object["tables"].as_array_mut().unwrap() {
        let sum = table.as_object_mut().unwrap().remove("rows_xxh3");
        assert_eq!(sum.expect("format 4 sums the rows").as_str().unwrap().len(), 32);
    }
    object.insert("format".into(), "waymark-backup/2".into());
    rewrite_manifest(&set, &manifest);

    p.run(&db, &["backup", "verify", "--deep", set.to_str().unwrap()]).ok();
    let listed = p.run(&db, &["backup", "list", "--json"]).ok().json();
    assert_eq!(listed["backups"][0]["complete"], true, "{listed}");
    assert!(listed["backups"][0].get("duration_ms").is_none(), "{listed}");
    let target = TestDb::new(Kind::Sqlite);
    p.run(&db, &["backup", "restore", set.to_str().unwrap(), "--to", &target.url])
        .ok();
    assert_eq!(
        target.rows("SELECT pad FROM big ORDER BY id"),
        db.rows("SELECT pad FROM big ORDER BY id")
    );

    // A format this waymark does not know is refused, naming the file, and
    // nothing is restored.
    manifest["format"] = "waymark-backup/9".into();
    rewrite_manifest(&set, &manifest);
    let other = TestDb::new(Kind::Sqlite);
    let run = p
        .run(&db, &["backup", "restore", set.to_str().unwrap(), "--to", &other.url])
        .code(3);
    assert!(
        run.stderr.contains(
            "manifest.json: format \"waymark-backup/9\": this waymark reads waymark-backup/2, waymark-backup/3, waymark-backup/4 and waymark-backup/5"
        ),
        "{}",
        run.stderr
    );
    assert!(other.tables().is_empty(), "{:?}", other.tables());
}
