//! Build facts for `rdsconn version --verbose` (what a bug report needs):
//! the commit, the build date, the target, the compiler and the TLS
//! stack's versions, as `RDSCONN_*` compile-time variables.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=RDSCONN_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    set("RDSCONN_GIT_COMMIT", &commit());
    set("RDSCONN_BUILD_DATE", &build_date());
    set(
        "RDSCONN_TARGET",
        &std::env::var("TARGET").unwrap_or_default(),
    );
    set(
        "RDSCONN_PROFILE",
        &std::env::var("PROFILE").unwrap_or_default(),
    );
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |v| v.trim().to_string());
    set("RDSCONN_RUSTC", &rustc_version);
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let tls = format!(
        "rustls {} with aws-lc-rs {} (aws-lc-sys {})",
        locked(&lock, "rustls"),
        locked(&lock, "aws-lc-rs"),
        locked(&lock, "aws-lc-sys")
    );
    set("RDSCONN_TLS", &tls);
}

fn set(name: &str, value: &str) {
    println!("cargo:rustc-env={name}={value}");
}

/// `RDSCONN_GIT_COMMIT` when the builder sets it (a release build from an
/// archive), else the checkout's HEAD, else `unknown`.
fn commit() -> String {
    if let Ok(c) = std::env::var("RDSCONN_GIT_COMMIT") {
        return c;
    }
    let git = Path::new(".git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        // Only paths that exist: cargo takes a missing one as changed on
        // every build. A directory counts as changed when anything under it
        // does, so a branch's first loose ref is seen too.
        for watched in [".git/refs", ".git/packed-refs"] {
            if Path::new(watched).exists() {
                println!("cargo:rerun-if-changed={watched}");
            }
        }
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output();
        if let Ok(o) = out
            && o.status.success()
        {
            return String::from_utf8_lossy(&o.stdout).trim().to_string();
        }
    }
    "unknown".into()
}

/// The build's UTC date (`SOURCE_DATE_EPOCH` for reproducible builds).
fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A package's version in Cargo.lock (the first one listed).
fn locked(lock: &str, name: &str) -> String {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == want
            && let Some(v) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "?".into()
}
