//! A stand-in for a native client (`psql`, `mariadb`): a shell script that
//! records what rdsconn handed it — its argv, its environment, a copy of
//! the defaults file named by `--defaults-extra-file=` and that file's mode
//! — and then execs the real client with the same arguments.
//!
//! The records are written by the child itself before it runs the real
//! client, so a test reads them after rdsconn has exited: nothing is
//! observed while the child runs, and nothing depends on timing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct StandIn {
    /// The script; pass it as `--client`.
    pub program: PathBuf,
    records: PathBuf,
}

impl StandIn {
    /// A stand-in called `name` (rdsconn picks the client's flavour from
    /// the name) in `dir`, running the real `real` client from PATH.
    pub fn new(dir: &Path, name: &str, real: &str) -> Self {
        let real = which(real);
        let bin = dir.join("standin-bin");
        let records = dir.join("standin-records");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&records).unwrap();
        let program = bin.join(name);
        let script = format!(
            r#"#!/bin/sh
out='{out}'
printf '%s\0' "$0" "$@" > "$out/argv"
env -0 > "$out/env"
for a in "$@"; do
  case "$a" in
    --defaults-extra-file=*|--defaults-file=*)
      f=${{a#*=}}
      stat -c %a "$f" > "$out/defaults-mode"
      cat "$f" > "$out/defaults"
      printf '%s' "$f" > "$out/defaults-path"
      ;;
  esac
done
exec '{real}' "$@"
"#,
            out = records.display(),
            real = real.display(),
        );
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { program, records }
    }

    /// The `--client` argument.
    pub fn arg(&self) -> String {
        self.program.display().to_string()
    }

    /// The argv the client was started with (argv[0] first).
    pub fn argv(&self) -> Vec<String> {
        split_nul(&self.read("argv"))
    }

    /// The client's environment, `NAME=VALUE` each.
    pub fn env(&self) -> Vec<String> {
        split_nul(&self.read("env"))
    }

    /// The defaults file rdsconn named: its path, its mode and a copy of
    /// its contents as the client saw them; `None` if none was named.
    pub fn defaults(&self) -> Option<(PathBuf, u32, String)> {
        let path = std::fs::read(self.records.join("defaults-path")).ok()?;
        let mode = String::from_utf8(self.read("defaults-mode")).unwrap();
        let mode = u32::from_str_radix(mode.trim(), 8).unwrap();
        let contents = String::from_utf8(self.read("defaults")).unwrap();
        Some((
            PathBuf::from(String::from_utf8(path).unwrap()),
            mode,
            contents,
        ))
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.records.join(name))
            .unwrap_or_else(|e| panic!("the stand-in client recorded no {name}: {e}"))
    }
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `program` in PATH, or a loud failure: the tests install the clients.
pub fn which(program: &str) -> PathBuf {
    which::which(program)
        .unwrap_or_else(|e| panic!("{program} is not in PATH ({e}; scripts/test.sh installs it)"))
}
