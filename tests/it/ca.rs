//! `rdsconn ca fetch|path|show` against a scripted local HTTP server, with a
//! private cache directory per test.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::http::{Reply, Server};
use crate::support::{TestEnv, embedded_pem, old_bundle_path};

const BASE: &str = "RDSCONN_CA_BASE_URL";

fn bundle_reply(etag: &str) -> Reply {
    Reply::Bundle {
        body: embedded_pem(),
        etag: format!("\"{etag}\""),
    }
}

/// sha256 by coreutils, independent of rdsconn's own hashing.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Temp files rdsconn left behind in `dir` (see `files::write_atomic`).
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".rdsconn-"))
        .collect()
}

fn cached_pem(env: &TestEnv) -> std::path::PathBuf {
    env.cache_dir().join("global-bundle.pem")
}

#[test]
fn show_works_offline_on_first_run_from_the_embedded_bundle() {
    let env = TestEnv::new();
    let run = env.run(&["--output", "json", "ca", "show"]);
    run.assert_code(0);
    crate::support::schema::assert_valid("ca-show", &run.stdout);
    let json = run.json();
    assert_eq!(json["source"]["kind"], "embedded");
    assert_eq!(json["summary"]["total"], 108);
    assert_eq!(json["summary"]["expired"], 0);
    let repo_pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/rds-global-bundle.pem");
    assert_eq!(json["sha256"], sha256sum(&repo_pem));
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // Showing writes nothing.
    assert!(!env.cache_dir().exists());
}

#[test]
fn show_text_lists_every_certificate() {
    let run = TestEnv::new().run(&["ca", "show"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("source:        embedded"),
        "{}",
        run.stdout
    );
    let rows = run
        .stdout
        .lines()
        .filter(|l| l.contains("Amazon RDS "))
        .count();
    assert_eq!(rows, 108);
    assert!(run.stdout.contains("eu-west-2"), "regions are shown");
}

/// Expiry flags checked against `openssl x509 -checkend`, one cert at a time.
#[test]
fn show_flags_the_expired_rds_ca_2019_certificates() {
    let env = TestEnv::new();
    let bundle = old_bundle_path();
    let run = env.run(&[
        "--output",
        "json",
        "--ca-bundle",
        bundle.to_str().unwrap(),
        "ca",
        "show",
    ]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["source"]["kind"], "file");

    let pem = fs::read_to_string(&bundle).unwrap();
    let blocks: Vec<String> = pem
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(str::to_string)
        .collect();
    let certs = json["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), blocks.len());
    let mut expired_by_openssl = 0;
    for (block, cert) in blocks.iter().zip(certs) {
        let mut child = Command::new("openssl")
            .args(["x509", "-noout", "-checkend", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("openssl is needed as the independent verifier");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), block.as_bytes()).unwrap();
        let expired = !child.wait().unwrap().success();
        expired_by_openssl += usize::from(expired);
        assert_eq!(
            cert["status"] == "expired",
            expired,
            "{}",
            cert["subject_cn"]
        );
    }
    assert!(expired_by_openssl > 0);
    assert_eq!(json["summary"]["expired"], expired_by_openssl);
    let names: Vec<&str> = certs
        .iter()
        .filter(|c| c["status"] == "expired")
        .filter_map(|c| c["subject_cn"].as_str())
        .collect();
    assert!(names.contains(&"Amazon RDS Root 2019 CA"), "{names:?}");
    assert!(
        run.stderr.contains("have expired"),
        "stderr warns: {}",
        run.stderr
    );

    let text = env.run(&["--ca-bundle", bundle.to_str().unwrap(), "ca", "show"]);
    assert!(
        text.stdout.contains("EXPIRED  Amazon RDS Root 2019 CA"),
        "{}",
        text.stdout
    );
}

#[test]
fn path_writes_the_embedded_bundle_privately_without_network() {
    let env = TestEnv::new();
    let run = env.run(&["ca", "path"]);
    run.assert_code(0);
    let path = Path::new(run.stdout.trim());
    assert!(path.is_absolute());
    assert_eq!(path, cached_pem(&env));
    assert_eq!(fs::read(path).unwrap(), embedded_pem());
    assert_eq!(
        fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(env.cache_dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // Idempotent: the same file, not rewritten.
    let ino = fs::metadata(path).unwrap().ino();
    let again = env.run(&["--output", "json", "ca", "path"]);
    again.assert_code(0);
    crate::support::schema::assert_valid("ca-path", &again.stdout);
    assert_eq!(again.json()["path"], path.to_str().unwrap());
    assert_eq!(fs::metadata(path).unwrap().ino(), ino);
}

#[test]
fn path_follows_xdg_cache_home_then_home() {
    let env = TestEnv::new();
    let xdg = env.root.path().join("xdg");
    let mut cmd = env.cmd(&["ca", "path"]);
    cmd.env_remove("RDSCONN_CACHE_DIR")
        .env("XDG_CACHE_HOME", &xdg);
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        xdg.join("rdsconn/global-bundle.pem").to_str().unwrap()
    );

    let mut cmd = env.cmd(&["ca", "path"]);
    cmd.env_remove("RDSCONN_CACHE_DIR");
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        env.home()
            .join(".cache/rdsconn/global-bundle.pem")
            .to_str()
            .unwrap()
    );
}

#[test]
fn path_with_ca_bundle_validates_and_prints_that_file() {
    let env = TestEnv::new();
    let old = old_bundle_path();
    let run = env.run(&["--ca-bundle", old.to_str().unwrap(), "ca", "path"]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), old.to_str().unwrap());

    let missing = env.run(&["--ca-bundle", "/nonexistent/ca.pem", "ca", "path"]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("/nonexistent/ca.pem"),
        "{}",
        missing.stderr
    );

    let garbage = env.root.path().join("garbage.pem");
    fs::write(&garbage, "hello").unwrap();
    let bad = env.run(&["--ca-bundle", garbage.to_str().unwrap(), "ca", "show"]);
    bad.assert_code(5);
    assert!(
        bad.stderr.contains("no PEM certificate found"),
        "{}",
        bad.stderr
    );
}

#[test]
fn fetch_then_conditional_get_leaves_the_file_untouched() {
    let env = TestEnv::new();
    let server = Server::start(bundle_reply("v1"));
    let base = server.base_url();
    let envs = [(BASE, base.as_str())];

    let first = env.run_with(&["ca", "fetch"], &envs);
    first.assert_code(0);
    assert!(first.stdout.starts_with("updated: "), "{}", first.stdout);
    let pem = cached_pem(&env);
    assert_eq!(fs::read(&pem).unwrap(), embedded_pem());
    assert_eq!(
        fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = fs::metadata(&pem).unwrap();

    std::thread::sleep(Duration::from_millis(20));
    let second = env.run_with(&["--output", "json", "ca", "fetch"], &envs);
    second.assert_code(0);
    crate::support::schema::assert_valid("ca-fetch", &second.stdout);
    let json = second.json();
    assert_eq!(json["status"], "unchanged");
    assert_eq!(json["certificates"], 108);
    let after = fs::metadata(&pem).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "file was rewritten"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/global/global-bundle.pem");
    assert!(!requests[0].headers.contains_key("if-none-match"));
    assert_eq!(
        requests[1].headers.get("if-none-match").map(String::as_str),
        Some("\"v1\"")
    );
    assert!(requests[1].headers.contains_key("if-modified-since"));

    // --force skips the validators and downloads again.
    env.run_with(&["ca", "fetch", "--force"], &envs)
        .assert_code(0);
    assert!(!server.requests()[2].headers.contains_key("if-none-match"));

    // The fetched bundle is what `ca show` and `ca path` now use.
    let show = env.run(&["--output", "json", "ca", "show"]);
    assert_eq!(show.json()["source"]["kind"], "cache");
    assert_eq!(show.json()["source"]["origin"], "fetched");
    assert_eq!(
        env.run(&["ca", "path"]).stdout.trim(),
        pem.to_str().unwrap()
    );
}

#[test]
fn fetch_region_uses_the_regional_path() {
    let env = TestEnv::new();
    let server = Server::start(bundle_reply("r1"));
    let base = server.base_url();
    let run = env.run_with(
        &["ca", "fetch", "--region", "eu-west-1"],
        &[(BASE, base.as_str())],
    );
    run.assert_code(0);
    assert_eq!(server.requests()[0].path, "/eu-west-1/eu-west-1-bundle.pem");
    let path = env.run(&["ca", "path", "--region", "eu-west-1"]);
    assert_eq!(
        path.stdout.trim(),
        env.cache_dir()
            .join("eu-west-1-bundle.pem")
            .to_str()
            .unwrap()
    );
    // A region never fetched falls back to the global bundle.
    let other = env.run(&["ca", "path", "--region", "ap-south-1"]);
    assert_eq!(other.stdout.trim(), cached_pem(&env).to_str().unwrap());
}

#[test]
fn every_failed_fetch_keeps_the_previous_bundle() {
    let env = TestEnv::new();
    let server = Server::start(bundle_reply("v1"));
    let base = server.base_url();
    let envs = [(BASE, base.as_str())];
    env.run_with(&["ca", "fetch"], &envs).assert_code(0);
    let pem = cached_pem(&env);
    let good = fs::read(&pem).unwrap();

    let truncated = embedded_pem()[..50_000].to_vec();
    let oversize = embedded_pem().repeat(30);
    let cases: Vec<(&str, Reply, i32, &str)> = vec![
        ("500", Reply::Status(500), 4, "500"),
        ("404", Reply::Status(404), 4, "404"),
        (
            "garbage",
            Reply::Body {
                body: b"<html>captive portal</html>".to_vec(),
                content_length: true,
            },
            5,
            "no PEM certificate found",
        ),
        (
            "empty",
            Reply::Body {
                body: Vec::new(),
                content_length: true,
            },
            5,
            "empty",
        ),
        (
            "truncated",
            Reply::Body {
                body: truncated,
                content_length: true,
            },
            5,
            "PEM syntax error",
        ),
        (
            "oversize",
            Reply::Body {
                body: oversize.clone(),
                content_length: true,
            },
            5,
            "larger than",
        ),
        (
            "oversize-streamed",
            Reply::Body {
                body: oversize,
                content_length: false,
            },
            5,
            "larger than",
        ),
        ("hang", Reply::Hang, 4, "timed out"),
    ];
    for (name, reply, code, needle) in cases {
        server.set_reply(reply);
        let run = env.run_with(&["ca", "fetch", "--force", "--timeout", "1s"], &envs);
        assert_eq!(run.code, code, "{name}: stderr {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{name}: expected {needle:?} in {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{name}");
        assert_eq!(
            fs::read(&pem).unwrap(),
            good,
            "{name}: the cached bundle changed"
        );
        let show = env.run(&["--output", "json", "ca", "show"]);
        assert_eq!(show.json()["source"]["kind"], "cache", "{name}");
        assert!(show.stderr.is_empty(), "{name}: {}", show.stderr);
    }
    let leftovers = temp_files(&env.cache_dir());
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn eight_concurrent_fetches_leave_one_valid_bundle() {
    let env = TestEnv::new();
    let server = Server::start(bundle_reply("c1"));
    server.set_delay(Duration::from_millis(150));
    let base = server.base_url();
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = env.cmd(&["--output", "json", "ca", "fetch"]);
            cmd.env(BASE, &base)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut statuses = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        statuses.push(json["status"].as_str().unwrap().to_string());
    }
    // The lock serialises the runs: one downloads, the rest revalidate.
    assert_eq!(
        statuses.iter().filter(|s| *s == "updated").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(fs::read(cached_pem(&env)).unwrap(), embedded_pem());
    assert_eq!(
        sha256sum(&cached_pem(&env)),
        env.run(&["--output", "json", "ca", "show"]).json()["sha256"]
    );
    let leftovers = temp_files(&env.cache_dir());
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn corrupted_cache_is_detected_and_not_trusted() {
    let env = TestEnv::new();
    env.run(&["ca", "path"]).assert_code(0);
    let pem = cached_pem(&env);
    let full = fs::read(&pem).unwrap();
    // Cut at a certificate boundary: still parseable PEM, but not what was written.
    let cut = String::from_utf8(full.clone())
        .unwrap()
        .find("-----END CERTIFICATE-----")
        .unwrap()
        + 26;
    for corrupt in [&full[..full.len() / 3], &full[..cut]] {
        fs::remove_dir_all(env.cache_dir()).unwrap();
        env.run(&["ca", "path"]).assert_code(0);
        fs::write(&pem, corrupt).unwrap();

        let show = env.run(&["--output", "json", "ca", "show"]);
        show.assert_code(0);
        assert_eq!(show.json()["source"]["kind"], "embedded");
        assert!(
            show.stderr.starts_with("warning: CA bundle "),
            "{}",
            show.stderr
        );
        assert!(show.stderr.contains("not usable"), "{}", show.stderr);

        let path = env.run(&["ca", "path"]);
        path.assert_code(0);
        assert!(
            path.stderr
                .contains("replacing it with the embedded bundle"),
            "{}",
            path.stderr
        );
        assert_eq!(fs::read(&pem).unwrap(), full, "ca path repaired the file");
        fs::write(&pem, corrupt).unwrap();

        // fetch does not send validators for a file it cannot trust.
        let server = Server::start(bundle_reply("x"));
        let base = server.base_url();
        let fetch = env.run_with(&["ca", "fetch"], &[(BASE, base.as_str())]);
        fetch.assert_code(0);
        assert!(
            fetch.stderr.contains("downloading a fresh copy"),
            "{}",
            fetch.stderr
        );
        assert!(!server.requests()[0].headers.contains_key("if-none-match"));
        assert_eq!(fs::read(&pem).unwrap(), full);
    }
}

#[test]
fn base_url_and_region_input_errors_are_usage_errors() {
    let env = TestEnv::new();
    let plain = env.run_with(&["ca", "fetch"], &[(BASE, "http://mirror.example.com")]);
    plain.assert_code(2);
    assert!(
        plain.stderr.contains("only allowed for loopback"),
        "{}",
        plain.stderr
    );
    assert_eq!(plain.stderr.lines().count(), 1, "{}", plain.stderr);

    let region = env.run(&["ca", "fetch", "--region", "Mars-1"]);
    region.assert_code(2);
    assert!(
        region.stderr.contains("invalid region \"Mars-1\""),
        "{}",
        region.stderr
    );

    let both = env.run(&["ca", "fetch", "--ca-bundle", "x.pem"]);
    both.assert_code(2);
    assert!(both.stderr.contains("--ca-bundle"), "{}", both.stderr);
}

/// Regression: `RDSCONN_CACHE_DIR` pointed at an existing shared directory
/// (mode 1777, like /tmp) had its mode changed to 0700. A directory that is
/// not already private is refused, and left as it is.
#[test]
fn a_shared_cache_directory_is_refused_not_chmodded() {
    let env = TestEnv::new();
    for mode in [0o1777, 0o755] {
        let shared = env.root.path().join(format!("shared-{mode:o}"));
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
        let dir = shared.display().to_string();
        let run = env.run_with(&["ca", "path"], &[("RDSCONN_CACHE_DIR", dir.as_str())]);
        run.assert_code(2);
        assert!(
            run.stderr.contains("not a private directory"),
            "{}",
            run.stderr
        );
        assert_eq!(
            fs::metadata(&shared).unwrap().permissions().mode() & 0o7777,
            mode,
            "the mode of {dir} changed"
        );
        // A new directory inside it is rdsconn's own.
        let own = shared.join("rdsconn");
        let own_str = own.display().to_string();
        let run = env.run_with(&["ca", "path"], &[("RDSCONN_CACHE_DIR", own_str.as_str())]);
        run.assert_code(0);
        assert_eq!(
            fs::metadata(&own).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
