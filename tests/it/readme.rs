//! Every `rdsconn` command in the README's `sh` blocks is run, offline: in
//! a network namespace of its own (no route anywhere, so DNS and AWS
//! calls fail at once), with static AWS credentials and the passwords set
//! as the README's blocks set them. What works offline (tokens, `env`,
//! `exec`, `ca`, completions, the man page) must succeed; the rest must get
//! as far as the network or the AWS API (exit 3 or 4), never a usage
//! error, except where the example itself needs a terminal or a program
//! this machine does not have. A README example that rots fails here.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{BINARY, Run, TestEnv};

const HOST: &str = "mydb.abc123.eu-west-1.rds.amazonaws.com";

/// What an example must do offline.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exit with this code; stderr holds the text (if any).
    Exit(i32, &'static str),
    /// Get as far as the network or the AWS API: exit 3 or 4.
    Offline,
    /// A server: keeps running and says this on stderr.
    Serves(&'static str),
    /// Keeps retrying (`check --wait`): still running once this is on
    /// stderr.
    Retries(&'static str),
}

/// The expectation for an example, by a piece of it; the first match wins.
const RULES: &[(&str, Expect)] = &[
    // No config file in the test's home: the names are unknown.
    (
        "rdsconn targets show",
        Expect::Exit(2, "unknown target @prod-ro"),
    ),
    ("rdsconn targets", Expect::Exit(0, "")),
    ("@prod", Expect::Exit(2, "unknown target @prod")),
    ("--dry-run", Expect::Exit(0, "")),
    ("rdsconn policy --resource-id", Expect::Exit(0, "")),
    ("-U app -W prod", Expect::Exit(2, "no terminal")),
    (
        "--client /opt/mysql/bin/mysql",
        Expect::Exit(2, "no such program"),
    ),
    ("-- mysqldump appdb", Expect::Exit(2, "")),
    ("rdsconn proxy pg --secret", Expect::Offline),
    (
        "rdsconn proxy wait",
        Expect::Exit(4, "did not start within 5s"),
    ),
    ("rdsconn proxy shutdown", Expect::Exit(4, "quitquitquit")),
    ("rdsconn proxy", Expect::Serves("listening on")),
    ("--wait 120s", Expect::Retries("attempt 1 failed")),
    ("rdsconn ca fetch", Expect::Offline),
    ("rdsconn ca ", Expect::Exit(0, "")),
    ("rdsconn completions", Expect::Exit(0, "")),
    ("rdsconn man", Expect::Exit(0, "")),
    ("rdsconn --version", Expect::Exit(0, "")),
    ("rdsconn version", Expect::Exit(0, "")),
    ("rdsconn token -h", Expect::Exit(0, "")),
    ("rdsconn token --hostname", Expect::Exit(0, "")),
    ("rdsconn token postgres://", Expect::Exit(0, "")),
    ("rdsconn token --output", Expect::Exit(0, "")),
    ("rdsconn env postgres", Expect::Exit(0, "")),
    ("rdsconn env mysql", Expect::Exit(0, "")),
    ("--via ssh://bastion -- ./migrate", Expect::Offline),
    ("rdsconn exec postgres", Expect::Exit(0, "")),
    (
        "rdsconn exec mysql -h mydb.abc123.eu-west-1.rds.amazonaws.com -u app --iam -- node",
        Expect::Exit(0, ""),
    ),
];

/// The `rdsconn` commands of the README's `sh` blocks, placeholders
/// filled in: `mydb…` is the endpoint, a bare `…` target a URL, `=…` a
/// value.
fn examples() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let mut out = Vec::new();
    for block in readme.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let block = block.replace("\\\n", " ");
        for line in block.lines() {
            let trimmed = line.trim_start();
            let in_comment = match (line.find("rdsconn "), line.find(" #")) {
                (Some(cmd), Some(comment)) => comment < cmd,
                (cmd, _) => cmd.is_none(),
            };
            if trimmed.starts_with('#') || in_comment || trimmed.starts_with("cargo ") {
                continue;
            }
            out.push(fill(&command_of(line)));
        }
    }
    out
}

/// The `rdsconn …` command in a line, with the `VAR=value` words before it
/// when they start the line: up to an unquoted `|`, `>`, `)`, `#`, or the
/// `"` that closes a `"$(…)"`.
fn command_of(line: &str) -> String {
    let at = line.find("rdsconn ").expect("an rdsconn line");
    let before = &line[..at];
    let env_words = !before.contains("$(")
        && before
            .split_whitespace()
            .all(|w| w.contains('=') && w.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
    let in_substitution = before.ends_with("$(");
    let mut cmd = String::new();
    let mut quote = None;
    for c in line[at..].chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' && in_substitution => break,
            None if c == '\'' || c == '"' => quote = Some(c),
            None if matches!(c, '|' | '>' | ')' | '#') => break,
            Some(_) | None => {}
        }
        cmd.push(c);
    }
    let prefix = if env_words { before.trim() } else { "" };
    format!("{prefix} {}", cmd.trim()).trim().to_string()
}

fn fill(cmd: &str) -> String {
    cmd.replace("mydb…rds.amazonaws.com", HOST)
        .replace("mydb…", HOST)
        .replace("=…", "=x")
        .replace("mysql … ", &format!("mysql mysql://app@{HOST}/prod "))
        .replace(
            "postgres … ",
            &format!("postgres postgres://app@{HOST}/prod "),
        )
        .replace(" … ", &format!(" {HOST} "))
}

fn expect(example: &str) -> Expect {
    RULES
        .iter()
        .find(|(piece, _)| example.contains(piece))
        .map_or(Expect::Offline, |(_, e)| *e)
}

/// `sh -c EXAMPLE` in a new network namespace, in `dir`, with `rdsconn`
/// on PATH.
fn command(env: &TestEnv, dir: &Path, example: &str) -> Command {
    let bin = Path::new(BINARY).parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c", example])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", env.home())
        .env("RDSCONN_CACHE_DIR", env.cache_dir())
        .env("XDG_RUNTIME_DIR", dir)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEREADME01")
        .env("AWS_SECRET_ACCESS_KEY", "readme-secret-key")
        .env("AWS_REGION", "eu-west-1")
        // Set as the README's own blocks set them.
        .env("PGPASSWORD", "x")
        .env("MYSQL_PWD", "x")
        .stdin(Stdio::null());
    cmd
}

/// Waits for a line (stdout or stderr) containing `needle` while the
/// process runs; kills it. Panics if it exits first or after a minute (a
/// real hang).
fn wait_running(mut cmd: Command, needle: &str, example: &str) {
    // Its own process group: `sh -c` may fork rdsconn rather than exec it,
    // and the whole example must end with the test.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_mins(1)) {
            Ok(line) if line.contains(needle) => break,
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(e) => panic!("{example}: no {needle:?} ({e}); it said:\n{seen}"),
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "{example}: ended");
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success(), "{example}: kill {group}");
    child.wait().unwrap();
}

#[test]
fn every_readme_example_runs() {
    let env = TestEnv::new();
    let dir = env.root.path().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    // The files the examples name.
    std::fs::write(
        dir.join("targets.txt"),
        format!("postgres://app@{HOST}/prod\nmysql://app@{HOST}/prod\n"),
    )
    .unwrap();
    let script = dir.join("manage.py");
    std::fs::write(&script, "#!/bin/sh\ntest -n \"$DATABASE_URL\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("app.js"),
        "if (!process.env.DATABASE_URL.includes('enableCleartextPlugin=true')) process.exit(9);\n",
    )
    .unwrap();

    let examples = examples();
    assert!(examples.len() >= 50, "{examples:#?}");
    // Each example has a network namespace of its own, so they run side
    // by side (the AWS SDK's retries and mysqldump's own lookups take
    // seconds each).
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = examples
            .chunks(examples.len().div_ceil(8))
            .map(|chunk| {
                let (env, dir) = (&env, &dir);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|example| run_example(env, dir, example))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("an example thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} README examples:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs one example; what went wrong, if anything.
fn run_example(env: &TestEnv, dir: &Path, example: &str) -> Option<String> {
    let cmd = command(env, dir, example);
    let (run, want) = match expect(example) {
        Expect::Serves(needle) => {
            wait_running(cmd, needle, example);
            return None;
        }
        Expect::Retries(needle) => {
            // Its progress shows with -v (or on a terminal).
            let verbose = example.replacen("rdsconn ", "rdsconn -v ", 1);
            wait_running(command(env, dir, &verbose), needle, example);
            return None;
        }
        Expect::Exit(code, text) => {
            let run = Run::from({ cmd }.output().unwrap());
            let ok = run.code == code && run.stderr.contains(text);
            (run, (!ok).then(|| format!("{code} {text:?}")))
        }
        Expect::Offline => {
            let run = Run::from({ cmd }.output().unwrap());
            let ok = matches!(run.code, 3 | 4);
            (run, (!ok).then(|| "3 or 4".to_string()))
        }
    };
    let want = if run.stderr.contains("panicked") {
        Some("no panic".to_string())
    } else {
        want
    };
    want.map(|want| format!("{example}\n  want {want}, got {}: {}", run.code, run.stderr))
}
