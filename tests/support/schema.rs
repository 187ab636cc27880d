//! The JSON contract: every command's `--output json` is checked against
//! its published JSON Schema (`docs/schemas/NAME.schema.json`) by an
//! independent validator (Python's `jsonschema`, Draft 2020-12).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const VALIDATE: &str = r"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
doc = json.load(sys.stdin)
errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
for e in errors:
    print(e.json_path, e.message, file=sys.stderr)
sys.exit(1 if errors else 0)
";

/// Panics unless `json` (one document) is valid against schema `name`.
pub fn assert_valid(name: &str, json: &str) {
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/schemas/{name}.schema.json"));
    assert!(schema.exists(), "no schema {}", schema.display());
    let mut child = Command::new(super::python())
        .args(["-c", VALIDATE])
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}: not valid against its schema:\n{}\n{json}",
        String::from_utf8_lossy(&out.stderr)
    );
}
