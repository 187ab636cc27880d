//! `rdsconn check` against the harness's servers: every failing stage has
//! its own exit code and JSON `stage`; `--wait` retries only transient
//! failures; several targets give per-target results and the worst code.

use std::time::{Duration, Instant};

use crate::support::pki::ENDPOINT;
use crate::support::server::{APP_PASSWORD, IAM_ACCESS_KEY, IAM_USER, Variant, free_port, pki};
use crate::support::{LateServer, Run, TestEnv, Watched, maria, pg};

fn ca() -> String {
    pki().ca_file.display().to_string()
}

/// `rdsconn --ca-bundle CA check --output json ARGS` with both passwords set.
fn check(args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let env = TestEnv::new();
    let ca = ca();
    let mut all = vec!["--ca-bundle", &ca, "check", "--output", "json"];
    all.extend_from_slice(args);
    let mut vars = vec![("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)];
    vars.extend_from_slice(extra_env);
    env.run_with(&all, &vars)
}

fn via(variant: Variant, mysql: bool) -> String {
    let port = if mysql {
        maria::server(variant).port
    } else {
        pg::server(variant).port
    };
    format!("127.0.0.1:{port}")
}

fn url(mysql: bool, user: &str) -> String {
    if mysql {
        format!("mysql://{user}@{ENDPOINT}/appdb")
    } else {
        format!("postgres://{user}@{ENDPOINT}/appdb")
    }
}

/// The one target's report, after checking the exit code and its stage.
#[track_caller]
fn single(run: &Run, code: i32, stage: Option<&str>) -> serde_json::Value {
    run.assert_code(code);
    crate::support::schema::assert_valid("check", &run.stdout);
    let json = run.json();
    let t = json["targets"][0].clone();
    assert_eq!(t["stage"].as_str(), stage, "{t:#}");
    assert_eq!(json["exit_code"], code, "{json:#}");
    t
}

#[test]
fn passing_targets_report_every_stage_and_the_certificate() {
    for mysql in [false, true] {
        let v = via(Variant::Good, mysql);
        let run = check(&[&url(mysql, "app"), "--via", &v], &[]);
        let t = single(&run, 0, None);
        assert_eq!(t["status"], "ok");
        let names: Vec<&str> = t["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["status"], "ok", "{s}");
                assert!(s["duration_ms"].as_f64().is_some(), "{s}");
                s["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(names, ["dns", "tcp", "tls", "auth", "query"]);
        assert_eq!(t["certificate"]["sans"], serde_json::json!([ENDPOINT]));
        assert!(t["certificate"]["days_left"].as_i64().unwrap() > 30);
        assert!(t["tls_protocol"].as_str().unwrap().starts_with("TLSv1."));
    }
}

#[test]
fn each_failing_stage_has_its_exit_code() {
    for mysql in [false, true] {
        let target = url(mysql, "app");
        let closed = format!("127.0.0.1:{}", free_port());
        let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hole_addr = hole.local_addr().unwrap().to_string();
        let good = via(Variant::Good, mysql);
        let cases: Vec<(Vec<String>, i32, &str, &str)> = vec![
            (
                vec![url(mysql, "app").replace(ENDPOINT, "nonexistent.invalid")],
                4,
                "dns",
                "nonexistent.invalid",
            ),
            (
                vec![target.clone(), "--via".into(), closed],
                4,
                "tcp",
                "refused",
            ),
            (
                vec![
                    target.clone(),
                    "--via".into(),
                    hole_addr,
                    "--connect-timeout".into(),
                    "1s".into(),
                ],
                4,
                "tls",
                "timed out",
            ),
            (
                vec![
                    target.clone(),
                    "--via".into(),
                    via(Variant::WrongName, mysql),
                ],
                5,
                "tls",
                "not valid for",
            ),
            (
                vec![target.clone(), "--via".into(), via(Variant::OtherCa, mysql)],
                5,
                "tls",
                "not trusted",
            ),
            (
                vec![target.clone(), "--via".into(), via(Variant::NoTls, mysql)],
                5,
                "tls",
                "does not offer TLS",
            ),
            (
                vec![
                    target.clone(),
                    "--via".into(),
                    good.clone(),
                    "--query".into(),
                    "SELEC 1".into(),
                ],
                1,
                "query",
                "syntax",
            ),
        ];
        for (args, code, stage, needle) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let t = single(&check(&args, &[]), code, Some(stage));
            assert!(
                t["error"].as_str().unwrap().contains(needle),
                "{args:?}: {t:#}"
            );
            assert_eq!(t["status"], "fail");
            let failed = t["stages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["status"] == "fail")
                .count();
            assert_eq!(failed, 1, "{t:#}");
            // A certificate that failed verification is still described.
            if needle == "not trusted" || needle == "not valid for" {
                assert!(t["certificate"]["issuer"].is_string(), "{args:?}: {t:#}");
                assert!(t["certificate"]["not_after"].is_string(), "{args:?}: {t:#}");
            }
        }
        drop(hole);
    }
}

#[test]
fn authentication_failures_are_exit_6() {
    for mysql in [false, true] {
        let target = url(mysql, "app");
        let good = via(Variant::Good, mysql);
        // Authentication: a wrong password, and an IAM token signed with
        // the wrong secret (refused by the server's verifier).
        let t = single(
            &check(
                &[&target, "--via", &good],
                &[("PGPASSWORD", "wrong"), ("MYSQL_PWD", "wrong")],
            ),
            6,
            Some("auth"),
        );
        assert!(
            t["error"]
                .as_str()
                .unwrap()
                .contains("rejected authentication"),
            "{t:#}"
        );
        let iam = format!("{}?iam=true", url(mysql, IAM_USER));
        let t = single(
            &check(
                &[&iam, "--via", &good],
                &[
                    ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY),
                    ("AWS_SECRET_ACCESS_KEY", "wrong"),
                ],
            ),
            6,
            Some("auth"),
        );
        assert_eq!(t["stages"][4]["status"], "skipped", "{t:#}");
    }
}

/// `check` as [`check`] does it, started with `-v` so that its progress
/// can be waited for; `env` must outlive it.
fn watched_check(env: &TestEnv, args: &[&str]) -> Watched {
    let ca = ca();
    let mut all = vec!["--ca-bundle", &ca, "-v", "check", "--output", "json"];
    all.extend_from_slice(args);
    let mut cmd = env.cmd(&all);
    cmd.env("PGPASSWORD", APP_PASSWORD)
        .env("MYSQL_PWD", APP_PASSWORD);
    Watched::spawn(cmd)
}

#[test]
fn wait_retries_until_a_late_server_answers() {
    let env = TestEnv::new();
    let late = LateServer::new();
    let v = format!("127.0.0.1:{}", late.port);
    let target = url(false, "app");
    let mut run = watched_check(&env, &[&target, "--via", &v, "--wait", "120s"]);
    // The server comes up once a first attempt has been refused.
    let line = run.wait_for("attempt 1 failed at tcp");
    assert!(line.contains("next try in"), "{line}");
    late.open(pg::server(Variant::Good).port);
    let run = run.finish();
    run.assert_code(0);
    let t = &run.json()["targets"][0];
    assert!(t["attempts"].as_u64().unwrap() > 1, "{t:#}");
    assert_eq!(t["status"], "ok", "{t:#}");
}

#[test]
fn wait_gives_up_at_the_deadline_with_the_last_error() {
    let closed = format!("127.0.0.1:{}", free_port());
    let start = Instant::now();
    let t = single(
        &check(&[&url(false, "app"), "--via", &closed, "--wait", "2s"], &[]),
        4,
        Some("tcp"),
    );
    assert!(t["attempts"].as_u64().unwrap() > 1, "{t:#}");
    assert!(t["error"].as_str().unwrap().contains("refused"), "{t:#}");
    assert!(start.elapsed() < Duration::from_secs(10));

    // As text with -v: each attempt on stderr, the count in the report.
    let env = TestEnv::new();
    let ca = ca();
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "-v",
            "check",
            &url(false, "app"),
            "--via",
            &closed,
            "--wait",
            "2s",
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    run.assert_code(4);
    assert!(
        run.stderr.contains("attempt 1 failed at tcp") && run.stderr.contains("next try in"),
        "{}",
        run.stderr
    );
    let row = run.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("refused") && row.contains(" attempts)"),
        "{}",
        run.stdout
    );
}

#[test]
fn wait_does_not_retry_certificate_failures() {
    let v = via(Variant::WrongName, false);
    let t = single(
        &check(&[&url(false, "app"), "--via", &v, "--wait", "30s"], &[]),
        5,
        Some("tls"),
    );
    assert_eq!(t["attempts"], 1, "{t:#}");
}

#[test]
fn mixed_targets_get_their_own_results_and_the_worst_exit_code() {
    let env = TestEnv::new();
    let file = env.root.path().join("targets.txt");
    let good_pg = format!(
        "postgres://app@127.0.0.1:{}/appdb",
        pg::server(Variant::Good).port
    );
    let closed = format!("postgres://app@127.0.0.1:{}/appdb", free_port());
    std::fs::write(&file, format!("# CI targets\n\n{good_pg}\n  {closed}\n")).unwrap();
    let ca = ca();
    let mysql_ip = format!(
        "mysql://app@127.0.0.1:{}/appdb",
        maria::server(Variant::Good).port
    );
    // verify-ca: the certificates name the endpoint, not 127.0.0.1.
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "check",
            "--output",
            "json",
            "--tls",
            "verify-ca",
            "--file",
            file.to_str().unwrap(),
            &mysql_ip,
        ],
        &[("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", "wrong")],
    );
    run.assert_code(4);
    let json = run.json();
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3);
    // Command-line URLs first, then the file's, in order.
    assert_eq!(targets[0]["target"], mysql_ip);
    assert_eq!(targets[0]["exit_code"], 6);
    assert_eq!(targets[1]["target"], good_pg);
    assert_eq!(targets[1]["status"], "ok");
    assert_eq!(targets[2]["stage"], "tcp");
    assert_eq!(json["summary"]["failed"], 2);
    assert_eq!(json["summary"]["passed"], 1);

    let text = env.run_with(
        &["--ca-bundle", &ca, "check", "--tls", "verify-ca", &good_pg],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    text.assert_code(0);
    // Piped: the header line, then tab-separated rows.
    assert!(
        text.stdout
            .starts_with("STATUS\tTARGET\tSTAGE\tTIME\tREASON\nOK\tpostgres://"),
        "{}",
        text.stdout
    );
}

#[test]
fn check_usage_errors() {
    let env = TestEnv::new();
    let cases: &[(&[&str], &str)] = &[
        (&["check"], "no targets"),
        (
            &["check", "postgres://app@h?sslmode=disable"],
            "sslmode=disable is weaker",
        ),
        (
            &["check", "postgres://app@h?nonsense=1"],
            "unknown parameter",
        ),
        (
            &[
                "check",
                "postgres://a@h",
                "mysql://a@h",
                "--via",
                "127.0.0.1:1",
                "--iam",
            ],
            "--via applies to a single target",
        ),
        (
            &["check", "--file", "/nonexistent/targets"],
            "reading /nonexistent/targets",
        ),
    ];
    for (args, needle) in cases {
        let run = env.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn ctrl_c_prints_the_partial_report() {
    partial_report_on("INT", 130);
}

/// Regression: SIGTERM (what CI runners and `timeout` send) ended `check`
/// without the partial report Ctrl-C gives.
#[test]
fn sigterm_prints_the_partial_report_too() {
    partial_report_on("TERM", 143);
}

fn partial_report_on(signal: &str, code: i32) {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap().to_string();
    let env = TestEnv::new();
    let good = format!(
        "postgres://app@127.0.0.1:{}/appdb",
        pg::server(Variant::Good).port
    );
    let stuck = format!("postgres://app@{hole_addr}/appdb");
    let mut run = watched_check(
        &env,
        &[
            "--tls",
            "verify-ca",
            "--connect-timeout",
            "60s",
            "--wait",
            "120s",
            &good,
            &stuck,
        ],
    );
    // The signal once the good target has its result; the other hangs.
    run.wait_for(&format!("{good}: ok after"));
    let killed = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = run.finish();
    run.assert_code(code);
    let json = run.json();
    assert_eq!(json["targets"][0]["status"], "ok", "{json:#}");
    assert_eq!(json["targets"][1]["status"], "interrupted", "{json:#}");
    assert_eq!(json["summary"]["interrupted"], true);
    drop(hole);
}

#[test]
fn expiring_certificate_is_a_warning_and_strict_makes_it_exit_5() {
    let v = via(Variant::Good, false);
    let target = url(false, "app");
    // The test certificates are valid for centuries: ask for more.
    let args = [target.as_str(), "--via", &v, "--warn-cert-days", "4000000"];
    let t = single(&check(&args, &[]), 0, None);
    assert_eq!(t["status"], "warn", "{t:#}");
    assert!(t["error"].as_str().unwrap().contains("expires in"), "{t:#}");

    let mut strict = args.to_vec();
    strict.push("--strict");
    let run = check(&strict, &[]);
    run.assert_code(5);
    assert_eq!(run.json()["summary"]["warnings"], 1);
    // --strict changes the exit code, not the counts.
    assert_eq!(run.json()["summary"]["passed"], 1);
    assert_eq!(run.json()["summary"]["failed"], 0);
}

/// An interrupted `--wait` keeps what it learned: each target's attempts
/// and last error (it reported `attempts: 0` and no stages), and the time
/// waited.
#[test]
fn an_interrupted_wait_keeps_the_attempts_and_the_last_error() {
    let env = TestEnv::new();
    let refused = format!("postgres://app@127.0.0.1:{}/appdb", free_port());
    let mut run = watched_check(&env, &["--tls", "verify-ca", "--wait", "120s", &refused]);
    run.wait_for("attempt 2 failed");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = run.finish();
    run.assert_code(130);
    crate::support::schema::assert_valid("check", &run.stdout);
    let json = run.json();
    let t = &json["targets"][0];
    assert_eq!(t["status"], "interrupted", "{json:#}");
    assert!(t["attempts"].as_u64().unwrap() >= 2, "{json:#}");
    assert!(t["error"].as_str().unwrap().contains("refused"), "{json:#}");
    assert_eq!(t["stage"], "tcp", "{json:#}");
    assert!(
        json["summary"]["total_ms"].as_f64().unwrap() > 0.0,
        "{json:#}"
    );
}

/// `--wait 3s` waits 3 s: the last try comes at the deadline (it gave up
/// 2.1 s in, when the next back-off would have passed it).
#[test]
fn wait_tries_until_its_deadline() {
    let refused = format!("postgres://app@127.0.0.1:{}/appdb", free_port());
    let started = Instant::now();
    let run = check(&["--tls", "verify-ca", "--wait", "3s", &refused], &[]);
    run.assert_code(4);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let j = run.json();
    assert!(
        j["summary"]["total_ms"].as_f64().unwrap() >= 3000.0,
        "{j:#}"
    );
}

/// Targets with different passwords check in one run (each engine's own
/// variable); a target without a password fails alone (exit 2), without
/// a connection, and the others still run.
#[test]
fn a_target_without_a_password_fails_alone() {
    let env = TestEnv::new();
    let ca = ca();
    let pg = format!(
        "postgres://app@{ENDPOINT}:{}/appdb?hostaddr=127.0.0.1",
        pg::server(Variant::Good).port
    );
    let run = env.run_with(
        &[
            "--ca-bundle",
            &ca,
            "check",
            "--output",
            "json",
            &pg,
            "mysql://app@h.invalid/db",
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    run.assert_code(2);
    crate::support::schema::assert_valid("check", &run.stdout);
    let j = run.json();
    assert_eq!(j["targets"][0]["status"], "ok", "{j:#}");
    let alone = &j["targets"][1];
    assert_eq!(alone["status"], "fail", "{j:#}");
    assert_eq!(alone["stage"], "auth", "{j:#}");
    assert_eq!(alone["exit_code"], 2, "{j:#}");
    assert!(
        alone["error"].as_str().unwrap().contains("no password for"),
        "{j:#}"
    );
    // No connection was tried for it.
    let tried = alone["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "skipped")
        .count();
    assert_eq!(tried, 1, "{j:#}");
    assert_eq!(j["summary"]["passed"], 1);
    assert_eq!(j["summary"]["failed"], 1);
}
