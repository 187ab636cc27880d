//! The GitHub Action (`action.yml` runs `scripts/action.sh`) against a
//! local release: a file server holding an archive of the rdsconn under
//! test and a `SHA256SUMS`, as a GitHub release would. The script installs
//! it only when the checksum matches, and runs `rdsconn check` against the
//! harness's servers with the report in the job summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::support::http::{Reply, Server};
use crate::support::pki::ENDPOINT;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{BINARY, Run, pg};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The archive name the script picks on this machine.
fn archive_name() -> String {
    format!(
        "rdsconn-{VERSION}-{}-unknown-linux-gnu.tar.gz",
        std::env::consts::ARCH
    )
}

/// The archive's bytes and their SHA-256 (from coreutils' `sha256sum`),
/// made once: `rdsconn-VERSION-TARGET/rdsconn` as `scripts/dist.sh` lays
/// it out.
fn archive() -> &'static (Vec<u8>, String) {
    static ARCHIVE: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let top = archive_name().trim_end_matches(".tar.gz").to_string();
        std::fs::create_dir(dir.path().join(&top)).unwrap();
        std::os::unix::fs::symlink(BINARY, dir.path().join(&top).join("rdsconn")).unwrap();
        let file = dir.path().join("a.tar.gz");
        let made = Command::new("tar")
            .args(["-h", "--use-compress-program=gzip -1", "-cf"])
            .arg(&file)
            .arg("-C")
            .arg(dir.path())
            .arg(&top)
            .status()
            .unwrap();
        assert!(made.success());
        let sum = Command::new("sha256sum").arg(&file).output().unwrap();
        assert!(sum.status.success());
        let hex = String::from_utf8(sum.stdout).unwrap()[..64].to_string();
        (std::fs::read(&file).unwrap(), hex)
    })
}

/// A release server whose `SHA256SUMS` says `sum` for this machine's
/// archive (and lists other targets' archives, as a real one does).
fn release(sum: &str) -> Server {
    let (bytes, _) = archive();
    let other = "0".repeat(64);
    let sums = format!(
        "{other}  rdsconn-{VERSION}-aarch64-apple-darwin.tar.gz\n\
         {sum}  {}\n\
         {other}  rdsconn_{VERSION}-1_amd64.deb\n",
        archive_name()
    );
    let files = HashMap::from([
        ("/SHA256SUMS".to_string(), sums.into_bytes()),
        (format!("/{}", archive_name()), bytes.clone()),
    ]);
    Server::start(Reply::Files(Arc::new(files)))
}

/// What a step running the action leaves behind.
struct Step {
    run: Run,
    dir: tempfile::TempDir,
}

impl Step {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// The step's outputs (`name=value` lines of `GITHUB_OUTPUT`).
    fn output(&self, name: &str) -> Option<String> {
        self.file("output")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")).map(String::from))
    }
}

/// `bash scripts/action.sh` as the composite action runs it, with `inputs`
/// as `INPUT_*` variables and the release at `server`.
fn step(server: &Server, inputs: &[(&str, &str)], password: &str) -> Step {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/action.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("RDSCONN_CACHE_DIR", dir.path().join("cache"))
        .env("RUNNER_TEMP", dir.path())
        .env("GITHUB_PATH", dir.path().join("path"))
        .env("GITHUB_OUTPUT", dir.path().join("output"))
        .env("GITHUB_STEP_SUMMARY", dir.path().join("summary"))
        .env("RDSCONN_RELEASE_URL", server.base_url())
        .env("RDSCONN_CA_BUNDLE", &pki().ca_file)
        .env("PGPASSWORD", password)
        .stdin(std::process::Stdio::null());
    for (k, v) in inputs {
        cmd.env(format!("INPUT_{}", k.to_ascii_uppercase()), v);
    }
    Step {
        run: Run::from(cmd.output().unwrap()),
        dir,
    }
}

fn target() -> String {
    format!("postgres://app@{ENDPOINT}/appdb")
}

fn via() -> String {
    format!("--via 127.0.0.1:{}", pg::server(Variant::Good).port)
}

#[test]
fn the_action_installs_the_checked_release_and_reports_a_passing_check() {
    let server = release(&archive().1);
    let (url, via) = (target(), via());
    let step = step(
        &server,
        &[("targets", url.as_str()), ("args", via.as_str())],
        APP_PASSWORD,
    );
    step.run.assert_code(0);
    assert!(
        step.run.stdout.contains(&format!("rdsconn {VERSION}")),
        "{}",
        step.run.stdout
    );
    // The binary's directory is on the job's PATH from the next step on.
    let path = PathBuf::from(step.file("path").trim());
    assert_eq!(step.output("path"), Some(path.display().to_string()));
    assert_eq!(
        std::fs::read(path.join("rdsconn")).unwrap(),
        std::fs::read(BINARY).unwrap()
    );
    assert_eq!(step.output("exit-code").as_deref(), Some("0"));
    let summary = step.file("summary");
    assert!(
        summary.starts_with("### rdsconn check: every target passed"),
        "{summary}"
    );
    assert!(summary.contains(ENDPOINT), "{summary}");
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/SHA256SUMS".to_string(), format!("/{}", archive_name())]
    );
}

#[test]
fn the_json_report_is_the_checks_report() {
    let server = release(&archive().1);
    let (url, via) = (target(), via());
    let step = step(
        &server,
        &[
            ("targets", url.as_str()),
            ("args", via.as_str()),
            ("output", "json"),
            ("wait", "10s"),
        ],
        APP_PASSWORD,
    );
    step.run.assert_code(0);
    let report = std::fs::read_to_string(step.output("report").unwrap()).unwrap();
    crate::support::schema::assert_valid("check", &report);
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["targets"][0]["status"], "ok");
}

#[test]
fn a_failing_check_fails_the_step_with_its_report_in_the_summary() {
    let server = release(&archive().1);
    let (url, via) = (target(), via());
    let step = step(
        &server,
        &[("targets", url.as_str()), ("args", via.as_str())],
        "not-the-password",
    );
    // Authentication failures are exit 6, as `rdsconn check` documents.
    step.run.assert_code(6);
    assert_eq!(step.output("exit-code").as_deref(), Some("6"));
    let summary = step.file("summary");
    assert!(
        summary.starts_with("### rdsconn check: failed (exit 6)"),
        "{summary}"
    );
    assert!(summary.contains("auth"), "{summary}");
}

#[test]
fn an_archive_that_does_not_match_its_checksum_is_never_run() {
    let server = release(&"a".repeat(64));
    let (url, via) = (target(), via());
    let step = step(
        &server,
        &[("targets", url.as_str()), ("args", via.as_str())],
        APP_PASSWORD,
    );
    step.run.assert_code(1);
    assert!(
        step.run.stderr.contains("checksum mismatch"),
        "{}",
        step.run.stderr
    );
    assert!(!step.run.stdout.contains("rdsconn "), "{}", step.run.stdout);
    assert_eq!(step.file("path"), "");
    assert_eq!(step.file("summary"), "");
}

#[test]
fn bad_inputs_and_missing_releases_fail_with_one_clear_error() {
    let server = release(&archive().1);
    let url = target();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("targets", &url), ("output", "yaml")],
            "output must be text or json",
        ),
        (
            &[("targets", &url), ("iam", "yes")],
            "iam must be true or false",
        ),
        (
            &[("targets", &url), ("version", "main")],
            "version must be latest or X.Y.Z",
        ),
        (&[], "no targets"),
    ];
    for (inputs, says) in cases {
        let step = step(&server, inputs, APP_PASSWORD);
        step.run.assert_code(1);
        assert!(
            step.run.stderr.contains(says),
            "{inputs:?}: {}",
            step.run.stderr
        );
    }
    // A release without this machine's archive.
    let empty = Server::start(Reply::Files(Arc::new(HashMap::from([(
        "/SHA256SUMS".to_string(),
        b"0000  rdsconn-0.1.0-sparc-sun-solaris.tar.gz\n".to_vec(),
    )]))));
    let step = step(&empty, &[("targets", &url)], APP_PASSWORD);
    step.run.assert_code(1);
    assert!(
        step.run.stderr.contains("lists no archive for"),
        "{}",
        step.run.stderr
    );
}
