//! Servers that cannot be used: one that never answers, one that refuses,
//! a wrong password, a history table whose name is an attack. Each fails
//! in seconds with its cause, says nothing secret, and changes nothing.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::{Kind, Project, Run, TestDb};

/// A port that accepts connections and then never says a word, as a host
/// behind a firewall that drops packets looks to a client that already
/// got through the handshake. Held open while the listener lives.
fn silent_server() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in accepting.incoming().flatten() {
            held.push(stream);
        }
    });
    (listener, port)
}

fn timed(p: &Project, url: &str, args: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let run = p.run_at(url, args);
    (run, started.elapsed())
}

#[test]
fn a_server_that_never_answers_fails_within_the_connect_timeout_with_the_cause() {
    let p = Project::new();
    let (_listener, port) = silent_server();
    for scheme in ["postgres", "mysql"] {
        let url = format!("{scheme}://app:s3cret-pw@127.0.0.1:{port}/app");
        // The default: 5 s, then one direct attempt of at most a second
        // to find the cause.
        let (run, took) = timed(&p, &url, &["status"]);
        let run = run.code(1);
        assert!(took < Duration::from_secs(12), "{scheme}: took {took:?}");
        assert!(took >= Duration::from_secs(5), "{scheme}: gave up early, {took:?}");
        assert!(
            run.stderr.contains("no answer within 5s (the connect timeout)"),
            "{scheme}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("{scheme}://app:***@127.0.0.1:{port}/app")),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("s3cret-pw"), "{}", run.stderr);

        // Shorter, from the flag, and in JSON.
        let (run, took) = timed(&p, &url, &["status", "--json", "--connect-timeout", "1s"]);
        let run = run.code(1);
        assert!(took < Duration::from_secs(6), "{scheme}: took {took:?}");
        let reply = run.json();
        assert_eq!(reply["ok"], false);
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("no answer within 1s (the connect timeout)"),
            "{message}"
        );
        assert!(!run.stdout.contains("s3cret-pw") && !run.stderr.contains("s3cret-pw"));
    }

    // From waymark.toml; and 0 is refused before anything is tried.
    p.file("waymark.toml", "connect_timeout = \"2s\"\n");
    let url = format!("postgres://app@127.0.0.1:{port}/app");
    let (run, took) = timed(&p, &url, &["status"]);
    run.code(1).stderr_has("no answer within 2s (the connect timeout)");
    assert!(took < Duration::from_secs(7), "took {took:?}");
    p.file("waymark.toml", "connect_timeout = \"0s\"\n");
    let (run, _) = timed(&p, &url, &["status"]);
    run.code(2)
        .stderr_has("waymark.toml: connect_timeout must be longer than 0");
    let (run, _) = timed(&p, &url, &["status", "--connect-timeout", "0s"]);
    run.code(2).stderr_has("--connect-timeout must be longer than 0");
}

#[test]
fn a_port_where_nothing_listens_is_named_as_refused() {
    let p = Project::new();
    // A port that was free a moment ago.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for scheme in ["postgres", "mysql"] {
        let url = format!("{scheme}://app@127.0.0.1:{port}/app");
        let (run, took) = timed(&p, &url, &["status", "--connect-timeout", "2s"]);
        run.code(1).stderr_has("Connection refused");
        assert!(took < Duration::from_secs(6), "{scheme}: took {took:?}");
    }
}

#[test]
fn a_wrong_password_is_named_without_the_password() {
    let db = TestDb::new(Kind::Mysql);
    let user = db.name().to_owned();
    db.execute(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'the-right-one'"));
    db.execute(&format!("GRANT ALL ON `{user}`.* TO '{user}'@'%'"));
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER);", None);
    let wrong = db.url.replacen("://root@", &format!("://{user}:Wr0ng-s3cret@"), 1);
    assert_ne!(wrong, db.url, "the test server's URL names root: {}", db.url);
    for args in [&["up"][..], &["status", "--json"][..]] {
        let (run, took) = timed(&p, &wrong, args);
        let run = run.code(1);
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains("Access denied"), "{all}");
        assert!(all.contains(&format!("{user}:***@")), "{all}");
        assert!(!all.contains("Wr0ng-s3cret"), "the password leaked:\n{all}");
    }
    // The right password works, and the wrong one changed nothing.
    assert!(db.tables().is_empty());
    let right = db.url.replacen("://root@", &format!("://{user}:the-right-one@"), 1);
    p.run_at(&right, &["up"]).ok();
    assert_eq!(db.tables(), ["t"]);
    db.execute(&format!("DROP USER '{user}'@'%'"));
}

fn a_history_table_named_as_an_injection_is_refused(kind: Kind) {
    let db = TestDb::new(kind);
    let p = Project::new();
    p.migration("1_t", "CREATE TABLE t (id INTEGER);", None);
    p.run(&db, &["up"]).ok();
    let before = db.snapshot();
    for name in [
        "waymark_history; DROP TABLE t; --",
        "waymark_history\"; DROP TABLE t; --",
        "x` (id INT); DROP TABLE t; -- ",
        "t' OR '1'='1",
    ] {
        p.run(&db, &["--history-table", name, "up"])
            .code(2)
            .stderr_has(&format!("history table name {name:?} must be a plain identifier"));
        p.run(&db, &["--history-schema", name, "status"])
            .code(2)
            .stderr_has("must be a plain identifier");
    }
    assert_eq!(db.snapshot(), before, "nothing changed");
    assert_eq!(db.history(), [("1".to_owned(), "applied".to_owned())]);
}

crate::common::each_dialect!(a_history_table_named_as_an_injection_is_refused);

/// TLS as the URL asks for it, with libpq's `sslmode` (PostgreSQL) and
/// MySQL's `ssl-mode`: `require` encrypts (the server says so of the
/// connection that ran the migration), `disable` does not, and a
/// certificate that cannot be verified, or a server without TLS where TLS
/// is required, is refused naming the database, before anything is
/// written.
#[test]
fn tls_is_used_as_the_url_asks() {
    let db = TestDb::new(Kind::Postgres);
    // Debian's server offers TLS with a self-signed certificate for
    // `localhost`, made when the package is installed.
    assert_eq!(
        db.rows("SHOW ssl"),
        [[Some("on".to_owned())]],
        "the test server offers TLS"
    );
    let p = Project::new();
    p.migration(
        "1_seen",
        "CREATE TABLE seen AS SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n",
        Some("DROP TABLE seen;"),
    );
    let url = |mode: &str| format!("{}?sslmode={mode}", db.url);
    let refused = p.run_at(&url("verify-full"), &["up"]).code(1);
    assert!(
        refused
            .stderr
            .contains(&format!("could not connect to {}", url("verify-full")))
            && refused.stderr.contains("certificate"),
        "{}",
        refused.stderr
    );
    assert!(db.tables().is_empty(), "nothing was written: {:?}", db.tables());
    // A root that is not a file is named, as libpq's `system` would be.
    let system = format!("{}&sslrootcert=system", url("verify-full"));
    p.run_at(&system, &["up"]).code(2).stderr_has(&format!(
        "invalid database URL {system}: sslrootcert names system, which is not a file \
         (libpq's `system` is not read here: without it, the system's roots are used)"
    ));
    assert!(db.tables().is_empty(), "nothing was written: {:?}", db.tables());

    p.run_at(&url("require"), &["up"]).ok();
    assert_eq!(db.rows("SELECT ssl::text FROM seen"), [[Some("true".to_owned())]]);
    p.run_at(&url("require"), &["down"]).ok();
    p.run_at(&url("disable"), &["up"]).ok();
    assert_eq!(db.rows("SELECT ssl::text FROM seen"), [[Some("false".to_owned())]]);

    // The MariaDB of these tests has no TLS: required, it is refused.
    let my = TestDb::new(Kind::Mysql);
    let required = format!("{}?ssl-mode=required", my.url);
    let refused = p.run_at(&required, &["up"]).code(1);
    assert!(
        refused.stderr.contains(&format!("could not connect to {required}"))
            && refused.stderr.contains("server does not support TLS"),
        "{}",
        refused.stderr
    );
    assert!(my.tables().is_empty(), "nothing was written: {:?}", my.tables());
}
