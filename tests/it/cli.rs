//! Command-line surface: help, parse errors, completions, man page.

use crate::support::TestEnv;

const SUBCOMMANDS: &[&str] = &[
    "ca",
    "token",
    "mysql",
    "postgres",
    "check",
    "env",
    "exec",
    "ls",
    "doctor",
    "proxy",
    "completions",
    "man",
    "version",
];

#[test]
fn every_subcommand_has_help() {
    let env = TestEnv::new();
    for sub in SUBCOMMANDS {
        let run = env.run(&[sub, "--help"]);
        run.assert_code(0);
        assert!(
            run.stdout.contains(&format!("Usage: rdsconn {sub}")),
            "`{sub} --help` has no usage line:\n{}",
            run.stdout
        );
    }
    for sub in ["fetch", "path", "show"] {
        let run = env.run(&["ca", sub, "--help"]);
        run.assert_code(0);
        assert!(
            run.stdout.contains(&format!("Usage: rdsconn ca {sub}")),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn postgres_aliases_are_accepted() {
    let env = TestEnv::new();
    for alias in ["psql", "pg"] {
        let run = env.run(&[alias, "--help"]);
        run.assert_code(0);
        assert!(run.stdout.contains("PostgreSQL"), "{}", run.stdout);
    }
}

#[test]
fn bad_flag_is_one_line_and_exit_2() {
    let env = TestEnv::new();
    for args in [
        &["ca", "fetch", "--forse"][..],
        &["ca", "fetch", "--timeout", "soon"],
        &["--output", "yaml", "ca", "show"],
        &["nosuchcommand"],
        &["completions", "tcsh"],
    ] {
        let run = env.run(args);
        run.assert_code(2);
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{args:?} stderr:\n{}",
            run.stderr
        );
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn typo_gets_a_suggestion_and_the_right_help_pointer() {
    let run = TestEnv::new().run(&["ca", "fetch", "--forse"]);
    assert!(run.stderr.contains("'--force'"), "{}", run.stderr);
    assert!(
        run.stderr.contains("rdsconn ca fetch --help"),
        "{}",
        run.stderr
    );
}

#[test]
fn proxy_bad_listen_address_is_one_line_and_exit_2() {
    let env = TestEnv::new();
    for (listen, says) in [
        ("db.example.com:5432", "invalid --listen"),
        ("127.0.0.1:99999", "invalid --listen"),
        ("10.0.0.1:5432", "--allow-remote"),
    ] {
        let run = env.run_with(
            &[
                "proxy",
                "pg",
                "-h",
                "mydb.abc123.us-east-1.rds.amazonaws.com",
                "--listen",
                listen,
            ],
            &[("PGPASSWORD", "x")],
        );
        run.assert_code(2);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert!(run.stderr.contains(says), "{listen}: {}", run.stderr);
    }
}

#[test]
fn completions_are_valid_scripts() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = env.run(&["completions", shell]);
        run.assert_code(0);
        assert!(run.stdout.contains("rdsconn"), "{shell}");
        assert!(
            run.stdout.contains("fetch"),
            "{shell}: nested subcommands missing"
        );
    }
    // bash itself must accept the script.
    let script = env.run(&["completions", "bash"]).stdout;
    let path = env.root.path().join("rdsconn.bash");
    std::fs::write(&path, script).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "bash -n rejected the completion script");
}

#[test]
fn man_page_renders_and_out_dir_writes_pages() {
    let env = TestEnv::new();
    let run = env.run(&["man"]);
    run.assert_code(0);
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH rdsconn"),
        "{}",
        &run.stdout[..200.min(run.stdout.len())]
    );
    let dir = env.root.path().join("man");
    env.run(&["man", "--out-dir", dir.to_str().unwrap()])
        .assert_code(0);
    for page in [
        "rdsconn.1",
        "rdsconn-ca.1",
        "rdsconn-ca-fetch.1",
        "rdsconn-token.1",
    ] {
        assert!(dir.join(page).exists(), "{page} missing");
    }
}

#[test]
fn version_flag() {
    let run = TestEnv::new().run(&["--version"]);
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("rdsconn {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Regression: `--connect-timeout 18446744073709551615s` panicked (an
/// Instant overflowed) in `-c`/`-e` and `check`. Every duration flag is
/// bounded, and the refusal is a usage error.
#[test]
fn huge_durations_are_usage_errors_not_panics() {
    let env = TestEnv::new();
    let host = "mydb.abc123.us-east-1.rds.amazonaws.com";
    let url = format!("postgres://app@{host}/db");
    for huge in ["18446744073709551615s", "25h", "9999999999999d"] {
        for args in [
            vec!["ca", "fetch", "--timeout", huge],
            vec!["check", &url, "--connect-timeout", huge],
            vec!["check", &url, "--wait", huge],
            vec![
                "postgres",
                &url,
                "--connect-timeout",
                huge,
                "-c",
                "SELECT 1",
            ],
            vec![
                "mysql",
                "-h",
                host,
                "-u",
                "app",
                "--connect-timeout",
                huge,
                "-e",
                "SELECT 1",
            ],
            vec!["doctor", &url, "--connect-timeout", huge],
            vec!["proxy", "postgres", host, "--connect-timeout", huge],
            vec!["proxy", "postgres", host, "--shutdown-grace", huge],
        ] {
            let run = env.run(&args);
            run.assert_code(2);
            assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains("24h"), "{args:?}: {}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        }
    }
}

/// Regression: `rdsconn token "postgres://app@EP/db?password=hunter2"`
/// printed the whole URL, password included.
#[test]
fn a_password_in_url_parameters_is_refused_and_never_echoed() {
    let env = TestEnv::new();
    let host = "mydb.abc123.us-east-1.rds.amazonaws.com";
    for url in [
        format!("postgres://app@{host}/db?password=hunter2"),
        format!("mysql://app@{host}/db?pwd=hunter2"),
        format!("postgres://app@{host}/db?sslpassword=hunter2"),
        format!("postgres://app@{host}:99999/db?password=hunter2"),
        format!("postgres://app:hunter2@{host}/db"),
    ] {
        for args in [
            vec!["token", &url],
            vec!["postgres", &url, "-c", "SELECT 1"],
            vec!["check", &url],
            vec!["env", "postgres", &url],
        ] {
            let run = env.run(&args);
            run.assert_code(2);
            assert!(!run.stderr.contains("hunter2"), "{args:?}: {}", run.stderr);
            assert!(!run.stdout.contains("hunter2"), "{args:?}: {}", run.stdout);
        }
    }
    let run = env.run(&[
        "token",
        &format!("postgres://app@{host}/db?password=hunter2"),
    ]);
    assert!(run.stderr.contains("--password-stdin"), "{}", run.stderr);
}

/// Regression: `mysql://pw_user%00x@…` logged in as `pw_user` (the protocol
/// ends names at NUL) while `token` signed `DBUser=pw_user%00x`.
#[test]
fn control_characters_in_user_and_database_names_are_usage_errors() {
    let env = TestEnv::new();
    let host = "mydb.abc123.us-east-1.rds.amazonaws.com";
    for url in [
        format!("mysql://pw_user%00x@{host}/db"),
        format!("postgres://a%0Ab@{host}/db"),
        format!("postgres://app@{host}/d%1Bb"),
        format!("mysql://app@{host}/d%00b"),
    ] {
        for args in [
            vec!["postgres", &url, "-c", "SELECT 1"],
            vec!["mysql", &url, "-e", "SELECT 1"],
            vec!["check", &url],
        ] {
            let mut args = args;
            if !url.starts_with(args[0]) && args[0] != "check" {
                continue;
            }
            args.push("--iam");
            let run = env.run(&args);
            run.assert_code(2);
            assert!(
                run.stderr.contains("control characters"),
                "{args:?}: {}",
                run.stderr
            );
            assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        }
    }
    for user in ["pw_user\u{1}x", "a\nb"] {
        let run = env.run(&["token", "-h", host, "-P", "3306", "-u", user]);
        run.assert_code(2);
        assert!(run.stderr.contains("control characters"), "{}", run.stderr);
    }
}

/// The commands people run most show examples, including the native
/// habits and the newer targets.
#[test]
fn the_main_commands_show_examples() {
    let env = TestEnv::new();
    for (sub, example) in [
        ("mysql", "-u app -p prod"),
        ("postgres", "-U app -W prod"),
        ("postgres", "--proxy app-proxy"),
        ("token", "dsql.us-east-1.on.aws"),
        ("check", "--wait 120s"),
        ("env", "eval"),
        ("exec", "./migrate up"),
        ("doctor", "--instance prod-db"),
        ("proxy", "--listen"),
    ] {
        let run = env.run(&[sub, "--help"]);
        run.assert_code(0);
        assert!(run.stdout.contains("Examples:"), "{sub}: {}", run.stdout);
        assert!(run.stdout.contains(example), "{sub}: {}", run.stdout);
    }
    // Every subcommand, the ca actions included, has examples.
    for sub in SUBCOMMANDS
        .iter()
        .map(|s| vec![*s])
        .chain(["fetch", "show", "path"].map(|a| vec!["ca", a]))
    {
        let mut args = sub.clone();
        args.push("--help");
        let run = env.run(&args);
        run.assert_code(0);
        assert!(
            run.stdout.contains("Examples:\n  "),
            "{sub:?}: {}",
            run.stdout
        );
    }
    // The hand-off through --via keeps VERIFY_IDENTITY: no stale advice.
    let run = env.run(&["mysql", "--help"]);
    assert!(
        !run.stdout.contains("that needs --tls verify-ca"),
        "{}",
        run.stdout
    );
}

#[test]
fn errors_are_one_json_line_on_stderr_with_output_json() {
    let env = TestEnv::new();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--output", "json", "ca", "fetch", "--forse"], 2, "usage"),
        (&["--output", "json", "mysql", "-pSECRET"], 2, "usage"),
        (
            &[
                "--output",
                "json",
                "postgres",
                "-h",
                "db.invalid",
                "-U",
                "app",
                "-w",
                "--connect-timeout",
                "5s",
                "-c",
                "SELECT 1",
            ],
            4,
            "network",
        ),
    ];
    for (args, code, category) in cases {
        let run = env.run_with(args, &[("PGPASSWORD", "pw")]);
        run.assert_code(*code);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        let j: serde_json::Value = serde_json::from_str(&run.stderr)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", run.stderr));
        crate::support::schema::assert_valid("error", &run.stderr);
        assert_eq!(j["error"]["exit_code"], *code, "{j}");
        assert_eq!(j["error"]["category"], *category, "{j}");
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{j}"
        );
        assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
    }
    // Text mode keeps the text layout.
    let run = env.run(&["ca", "fetch", "--forse"]);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
}

/// `--help` groups the flags under headings, the global flags last; a flag
/// is never shown in a form that is then refused (mysql's `-p` takes no
/// value); example lines fit 100 columns, so they never wrap mid-command.
#[test]
fn help_groups_flags_under_headings() {
    let env = TestEnv::new();
    for sub in [
        "mysql", "postgres", "check", "env", "exec", "doctor", "proxy", "token",
    ] {
        let run = env.run(&[sub, "--help"]);
        run.assert_code(0);
        let headings: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
            .collect();
        for want in ["Target:", "Authentication:", "Global options:"] {
            assert!(headings.contains(&want), "{sub}: {headings:?}");
        }
        let global = headings
            .iter()
            .position(|h| *h == "Global options:")
            .unwrap();
        let examples = headings
            .iter()
            .position(|h| *h == "Examples:")
            .unwrap_or(headings.len());
        assert_eq!(
            global + 1,
            examples,
            "{sub}: global flags last: {headings:?}"
        );
        assert!(
            !run.stdout.contains("[=<PASSWORD>]"),
            "{sub}: {}",
            run.stdout
        );
        let after = run.stdout.split("Examples:").nth(1).unwrap_or_default();
        for line in after.lines().take_while(|l| !l.starts_with("Exit codes")) {
            assert!(line.chars().count() <= 100, "{sub}: {line:?}");
        }
    }
    let run = env.run(&["mysql", "--help"]);
    assert!(run.stdout.contains("  -p, --password\n"), "{}", run.stdout);
    // `--password=SECRET` is refused before parsing, never echoed.
    let run = env.run(&["mysql", "--password=hunter2", "-h", "h"]);
    run.assert_code(2);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    let run = env.run(&["ls", "--help"]);
    assert!(run.stdout.contains("proxies"), "{}", run.stdout);
}

/// What the machine says (the oracle for the build facts).
fn tool(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn version_short_and_verbose() {
    let env = TestEnv::new();
    let plain = format!("rdsconn {}", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"], &["version"]] {
        let run = env.run(args);
        run.assert_code(0);
        assert_eq!(run.stdout.trim(), plain, "{args:?}");
    }
    let rustc = tool("rustc", &["--version"]);
    let host = tool("rustc", &["-vV"])
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let commit = tool("git", &["-C", root, "rev-parse", "--short=12", "HEAD"]);
    for args in [
        &["--version", "--verbose"][..],
        &["--verbose", "--version"],
        &["-V", "-v"],
        &["-vV"],
        &["version", "--verbose"],
        &["version", "-v"],
    ] {
        let run = env.run(args);
        run.assert_code(0);
        let text = &run.stdout;
        assert!(text.starts_with(&format!("{plain}\n")), "{args:?}: {text}");
        for line in [
            format!("commit: {commit}"),
            format!("target: {host}"),
            format!("rustc: {rustc}"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{args:?}: no {line:?} in\n{text}"
            );
        }
        assert!(text.contains("tls: rustls "), "{text}");
        assert!(
            text.lines().any(|l| l
                .strip_prefix("build date: ")
                .is_some_and(|d| d.len() == 10)),
            "{text}"
        );
    }
    let run = env.run(&["version", "--output", "json"]);
    run.assert_code(0);
    crate::support::schema::assert_valid("version", &run.stdout);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["commit"], commit.as_str());
    assert_eq!(v["target"], host.as_str());
    // Anything else with --version is clap's: the plain version.
    let run = env.run(&["--version", "--region", "us-east-1"]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), plain);
}
