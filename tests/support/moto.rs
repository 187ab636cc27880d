//! A moto server (the RDS and EC2 APIs, locally) shared by the tests of this
//! process, and boto3-driven setup of instances and clusters in it.
//!
//! moto keeps state per region, so tests that list everything use their
//! own region. Known gaps: one fixed `DbiResourceId` pattern, no
//! `DescribeCertificates`, Aurora members report IAM off (clusters carry it).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::python;
use super::server::{free_port, spawn_watchdog};

/// The server's base URL, started on first use.
pub fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = free_port();
        let moto = python().with_file_name("moto_server");
        assert!(
            moto.exists(),
            "{} missing: run scripts/test.sh (pip install moto[server])",
            moto.display()
        );
        let script = format!(
            "{moto} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & srv=$!; \
             while [ -d /proc/{pid} ] && kill -0 $srv 2>/dev/null; do sleep 0.3; done; \
             kill $srv 2>/dev/null",
            moto = moto.display(),
            pid = std::process::id()
        );
        spawn_watchdog(&script, None);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_mins(2),
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("http://127.0.0.1:{port}")
    })
}

/// Creates what `spec` lists in `region` (see `tests/oracle/moto_setup.py`)
/// and returns what moto reports for the whole region, per identifier.
pub fn setup(region: &str, spec: &serde_json::Value) -> serde_json::Value {
    run_script("moto_setup.py", &[region], spec)
}

/// Creates the tagged EC2 instances `spec` lists in `region` (see
/// `tests/oracle/moto_ec2.py`); every instance of the region, per id.
pub fn ec2(region: &str, spec: &serde_json::Value) -> serde_json::Value {
    run_script("moto_ec2.py", &[region], spec)
}

/// Secrets and RDS-managed master secrets (see
/// `tests/oracle/moto_secret.py`): one result per op.
pub fn secrets(ops: &serde_json::Value) -> Vec<serde_json::Value> {
    serde_json::from_value(run_script("moto_secret.py", &[], ops)).unwrap()
}

/// `tests/oracle/SCRIPT MOTO_URL ARGS…` with `input` as JSON on stdin; its
/// JSON output. Scripts take turns: moto does not like concurrent creates
/// (automated snapshot names clash).
fn run_script(script: &str, args: &[&str], input: &serde_json::Value) -> serde_json::Value {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(script);
    let mut child = Command::new(python())
        .arg(path)
        .arg(url())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
