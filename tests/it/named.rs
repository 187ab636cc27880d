//! Named targets: `@NAME` from rdsconn's config file and the project's
//! `.rdsconn.toml` in every command that takes a target, against the
//! harness's servers; precedence (flag > target > base > defaults >
//! environment); libpq's service file with psql itself as the oracle;
//! completion of the names; every bad file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::pki::ENDPOINT;
use crate::support::proxy::ProxyProc;
use crate::support::server::{APP_PASSWORD, Variant, pki};
use crate::support::{BINARY, Run, TestEnv, maria, pg};

/// Writes `text` to `path` (directories made) with `mode`.
fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The user's config file of `env` (`~/.config/rdsconn/config.toml`).
fn user_config(env: &TestEnv) -> PathBuf {
    env.home().join(".config/rdsconn/config.toml")
}

/// A config holding `pg` and `maria`, the harness's servers, and `text`.
fn servers(more: &str) -> String {
    let ca = pki().ca_file.display();
    let (pg, maria) = (
        pg::server(Variant::Good).port,
        maria::server(Variant::Good).port,
    );
    format!(
        "[defaults]\nca-bundle = \"{ca}\"\nregion = \"us-east-1\"\n\n\
         [targets.pg]\nengine = \"postgres\"\nhost = \"{ENDPOINT}\"\nvia = \"127.0.0.1:{pg}\"\n\
         user = \"app\"\ndatabase = \"appdb\"\n\n\
         [targets.maria]\ndescription = \"the MariaDB of the harness\"\nengine = \"mysql\"\n\
         host = \"{ENDPOINT}\"\nvia = \"127.0.0.1:{maria}\"\nuser = \"app\"\ndatabase = \"appdb\"\n\
         {more}"
    )
}

fn env_with(config: &str) -> TestEnv {
    let env = TestEnv::new();
    write(&user_config(&env), config, 0o600);
    env
}

const PASSWORDS: [(&str, &str); 2] = [("PGPASSWORD", APP_PASSWORD), ("MYSQL_PWD", APP_PASSWORD)];

fn run(env: &TestEnv, args: &[&str]) -> Run {
    env.run_with(args, &PASSWORDS)
}

/// `NAME='value'` lines of `rdsconn env`'s output as a map.
fn vars(run: &Run) -> std::collections::HashMap<String, String> {
    run.assert_code(0);
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

#[test]
fn every_command_that_takes_a_target_takes_a_name() {
    let env = env_with(&servers(""));
    let out = run(
        &env,
        &[
            "psql",
            "@pg",
            "-c",
            "SELECT current_user || '/' || current_database() AS who",
        ],
    );
    out.assert_code(0);
    assert!(out.stdout.contains("app/appdb"), "{}", out.stdout);
    let out = run(
        &env,
        &[
            "mysql",
            "@maria",
            "-e",
            "SELECT CONCAT(CURRENT_USER(), '/', DATABASE()) AS who",
        ],
    );
    out.assert_code(0);
    assert!(out.stdout.contains("app@"), "{}", out.stdout);
    assert!(out.stdout.contains("/appdb"), "{}", out.stdout);

    // check takes several names, each its own target.
    let out = run(&env, &["check", "@pg", "@maria", "--output", "json"]);
    out.assert_code(0);
    crate::support::schema::assert_valid("check", &out.stdout);
    let json = out.json();
    let labels: Vec<&str> = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["status"], "ok", "{t}");
            t["target"].as_str().unwrap()
        })
        .collect();
    assert_eq!(labels, ["@pg", "@maria"]);

    let v = vars(&run(&env, &["env", "@pg"]));
    assert_eq!(v["PGHOST"], ENDPOINT);
    assert_eq!(v["PGHOSTADDR"], "127.0.0.1");
    assert_eq!(v["PGDATABASE"], "appdb");
    let out = run(
        &env,
        &[
            "exec",
            "@pg",
            "--",
            "psql",
            "-X",
            "-At",
            "-c",
            "SELECT current_database()",
        ],
    );
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "appdb");

    let out = env.run_with(
        &["token", "@pg"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
    );
    out.assert_code(0);
    assert!(
        out.stdout
            .starts_with(&format!("{ENDPOINT}:5432/?Action=connect&DBUser=app&")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("%2Fus-east-1%2Frds-db%2F"),
        "{}",
        out.stdout
    );

    let out = run(&env, &["doctor", "@pg"]);
    assert!(
        out.stdout.contains("OK    connect: query"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // The proxy serves the name; a client logs in through it.
    let proxy = ProxyProc::start(&env, &["@pg", "--listen", "127.0.0.1:0"], &PASSWORDS);
    let out = Command::new("psql")
        .args(["-X", "-At", "-c", "SELECT current_database()"])
        .arg(format!(
            "host=127.0.0.1 port={} user=app dbname=appdb sslmode=disable",
            proxy.port()
        ))
        .env("PGPASSWORD", APP_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "appdb",
        "{}",
        proxy.log()
    );
}

#[test]
fn flags_win_over_the_target_over_its_base_over_defaults_over_the_environment() {
    let env = env_with(concat!(
        "[defaults]\nuser = \"d_user\"\ndatabase = \"d_db\"\nport = 1111\n",
        "[targets.base]\nengine = \"postgres\"\nhost = \"base.example\"\nuser = \"b_user\"\n",
        "[targets.t]\nextends = \"base\"\ndatabase = \"t_db\"\n",
    ));
    let environment = [
        ("PGPASSWORD", "pw"),
        ("PGUSER", "env_user"),
        ("PGDATABASE", "env_db"),
        ("PGPORT", "9999"),
        ("PGHOST", "env.example"),
    ];
    let v = vars(&env.run_with(&["env", "@t"], &environment));
    assert_eq!(v["PGHOST"], "base.example");
    assert_eq!(v["PGUSER"], "b_user");
    assert_eq!(v["PGDATABASE"], "t_db");
    assert_eq!(v["PGPORT"], "1111");
    let v = vars(&env.run_with(
        &[
            "env",
            "@t",
            "-U",
            "cli_user",
            "-p",
            "2222",
            "-h",
            "cli.example",
        ],
        &environment,
    ));
    assert_eq!(v["PGHOST"], "cli.example");
    assert_eq!(v["PGUSER"], "cli_user");
    assert_eq!(v["PGDATABASE"], "t_db");
    assert_eq!(v["PGPORT"], "2222");
    // A typed endpoint replaces the table's whole endpoint: an instance
    // is no longer looked up when -h is given.
    let env = env_with(
        "[targets.i]\nengine = \"postgres\"\ninstance = \"db1\"\nreader = false\nuser = \"u\"\n",
    );
    let v = vars(&env.run_with(&["env", "@i", "-h", "cli.example"], &[("PGPASSWORD", "pw")]));
    assert_eq!(v["PGHOST"], "cli.example");
    // -v says where each value came from.
    let env = env_with("[targets.t]\nengine = \"postgres\"\nhost = \"h.example\"\nuser = \"u\"\n");
    let out = env.run_with(&["-v", "env", "@t", "-U", "other"], &[("PGPASSWORD", "pw")]);
    out.assert_code(0);
    let config = user_config(&env).display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "@t: --host \"h.example\" from {config}:3 [targets.t]"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "@t: user from the command line ({config}:4 not used)"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn the_project_file_is_found_from_a_subdirectory_and_wins_over_the_users() {
    let env = env_with(concat!(
        "[targets.t]\nengine = \"postgres\"\nhost = \"user.example\"\nuser = \"u\"\n",
        "[targets.mine]\nengine = \"mysql\"\nhost = \"mine.example\"\nuser = \"u\"\n",
    ));
    let project = env.root.path().join("project");
    write(
        &project.join(".rdsconn.toml"),
        "[targets.t]\nengine = \"postgres\"\nhost = \"project.example\"\nuser = \"team\"\n",
        0o644,
    );
    let deep = project.join("src/deep");
    std::fs::create_dir_all(&deep).unwrap();
    let in_deep = |args: &[&str]| {
        let mut cmd = env.cmd(args);
        cmd.current_dir(&deep)
            .env("PGPASSWORD", "pw")
            .env("MYSQL_PWD", "pw");
        Run::from(cmd.output().unwrap())
    };
    let v = vars(&in_deep(&["env", "@t"]));
    assert_eq!(v["PGHOST"], "project.example");
    assert_eq!(v["PGUSER"], "team");
    let v = vars(&in_deep(&["env", "@mine"]));
    assert_eq!(v["MYSQL_HOST"], "mine.example");
    let listed = in_deep(&["targets", "--output", "json"]);
    listed.assert_code(0);
    let json = listed.json();
    let t = json
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "t")
        .unwrap();
    assert_eq!(
        t["file"],
        project.join(".rdsconn.toml").display().to_string()
    );
    // Outside the project only the user's file counts.
    let v = vars(&env.run_with(&["env", "@t"], &[("PGPASSWORD", "pw")]));
    assert_eq!(v["PGHOST"], "user.example");
}

/// `psql SERVICE -X -At -c SQL` with `vars`: psql's own reading of the
/// service file.
fn psql_service(conninfo: &str, vars: &[(&str, &str)], sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-At", "-c", sql, conninfo])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_pg_service_file_gives_psql_and_rdsconn_the_same_target() {
    let env = TestEnv::new();
    let port = pg::server(Variant::Good).port;
    let file = env.root.path().join("services.conf");
    write(
        &file,
        &format!(
            "# the harness\n[harness]\nhost={ENDPOINT}\nhostaddr=127.0.0.1\nport={port}\nuser=app\n\
             dbname=appdb\nsslmode=verify-full\nsslrootcert={}\napplication_name=svc-test\n",
            pki().ca_file.display()
        ),
        0o644,
    );
    let service_file = file.display().to_string();
    let vars = [
        ("PGSERVICEFILE", service_file.as_str()),
        ("PGPASSWORD", APP_PASSWORD),
    ];
    let sql = "SELECT current_user || ' ' || current_database() || ' ' || current_setting('port') || ' ' || (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())";
    let oracle = psql_service("service=harness", &vars, sql);
    assert_eq!(oracle, format!("app appdb {port} true"));
    for args in [vec!["psql", "service=harness"], vec!["psql", "@harness"]] {
        let mut all = args.clone();
        all.extend(["--", "-X", "-At", "-c", sql]);
        let out = env.run_with(&all, &vars);
        out.assert_code(0);
        assert_eq!(out.stdout.trim(), oracle, "{args:?}: {}", out.stderr);
        // The key rdsconn does not use is reported.
        assert!(
            out.stderr
                .contains("keys rdsconn does not use: application_name"),
            "{}",
            out.stderr
        );
    }
    // PGSERVICE, as psql takes it.
    let mut with_service = vars.to_vec();
    with_service.push(("PGSERVICE", "harness"));
    let out = env.run_with(&["psql", "--", "-X", "-At", "-c", sql], &with_service);
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), oracle);
    assert_eq!(psql_service("", &with_service, sql), oracle);
    // rdsconn's own check of the same service, in-process.
    let out = env.run_with(&["check", "--engine", "postgres", "@harness"], &vars);
    out.assert_code(0);
}

#[test]
fn completion_scripts_offer_the_names() {
    let env = env_with(
        "[targets.prod]\nengine = \"postgres\"\nhost = \"p.example\"\n[targets.prod-ro]\nextends = \"prod\"\n[targets.staging]\nengine = \"mysql\"\nhost = \"s.example\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BINARY, dir.path().join("rdsconn")).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = |shell: &str| {
        let out = env.run(&["completions", shell]);
        out.assert_code(0);
        let file = dir.path().join(format!("completion.{shell}"));
        std::fs::write(&file, &out.stdout).unwrap();
        file
    };
    let in_shell = |shell: &str, code: String| {
        let out = Command::new(shell)
            .args(["-c", &code])
            .env("HOME", env.home())
            .env("PATH", &path)
            .output()
            .unwrap_or_else(|e| panic!("{shell} (scripts/test.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect();
        words.sort();
        words
    };
    let bash = script("bash");
    assert_eq!(
        in_shell(
            "bash",
            format!(
                "source {}; COMP_WORDS=(rdsconn psql @pr); COMP_CWORD=2; _rdsconn_named; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                bash.display()
            )
        ),
        ["@prod", "@prod-ro"]
    );
    let fish = script("fish");
    assert_eq!(
        in_shell(
            "fish",
            format!("source {}; complete -C 'rdsconn check @'", fish.display())
        ),
        ["@prod", "@prod-ro", "@staging"]
    );
    // zsh: the script parses, and its completer is the one for @NAME.
    let zsh = script("zsh");
    let out = Command::new("zsh").arg("-n").arg(&zsh).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&zsh).unwrap();
    assert!(text.contains("rdsconn targets names"));
    assert!(text.contains("_rdsconn_flags \"$@\""));
}

#[test]
fn bad_files_and_names_are_one_clear_error_naming_the_file_and_line() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "[targets.a]\nengine = \"postgres\"\npassword = \"hunter2\"\n",
            &["env", "@a"],
            ":3: a password does not belong in a file",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nhots = \"h\"\n",
            &["env", "@a"],
            ":3: [targets.a]: unknown key \"hots\" (did you mean host?)",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nhost = \"h\"\nport = \"abc\"\n",
            &["env", "@a"],
            ":4: [targets.a]: invalid value 'abc' for '--port <PORT>'",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nhost = \"h\"\niam = \"yes\"\n",
            &["env", "@a"],
            ":4: [targets.a]: iam = \"yes\": expected true or false",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nhost = true\n",
            &["env", "@a"],
            ":3: [targets.a]: host = true: expected a value",
        ),
        (
            "[targets.a]\nextends = \"b\"\n[targets.b]\nextends = \"a\"\nengine = \"postgres\"\n",
            &["env", "@a"],
            "extends makes a cycle: a → b → a",
        ),
        (
            "[targets.prod]\nengine = \"postgres\"\nhost = \"h\"\n",
            &["env", "@prdo"],
            "unknown target @prdo (did you mean @prod?)",
        ),
        (
            "[targets.prod]\nengine = \"postgres\"\nhost = \"h\"\n",
            &["psql", "prod"],
            "\"prod\" is a database name here and also the target defined at",
        ),
        (
            "[targets.prod]\nengine = \"postgres\"\nhost = \"h\"\n",
            &["mysql", "@prod"],
            "@prod is a postgres target",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nhost = \"h\"\n[targets.b]\nengine = \"postgres\"\nhost = \"h\"\n",
            &["env", "@a", "@b"],
            "one @NAME per command",
        ),
        (
            "[targets.a]\nengine = \"postgres\"\nhost = \"h\"\nport = 1.5\n",
            &["env", "@a"],
            ":4: port = float",
        ),
        (
            "[targets.a]\nengine = \"oracle\"\nhost = \"h\"\n",
            &["env", "@a"],
            ":2: engine = \"oracle\": expected \"mysql\" or \"postgres\"",
        ),
    ];
    for (config, args, says) in cases {
        let env = env_with(config);
        let out = env.run_with(args, &[("PGPASSWORD", "pw")]);
        out.assert_code(2);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(
            out.stderr.contains(says),
            "{config:?} {args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn target_files_others_may_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    // A file others may write is refused, like a shared cache directory.
    let env = TestEnv::new();
    write(
        &user_config(&env),
        "[targets.a]\nengine = \"postgres\"\nhost = \"h\"\n",
        0o666,
    );
    let out = env.run_with(&["env", "@a"], &[("PGPASSWORD", "pw")]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("is writable by others"),
        "{}",
        out.stderr
    );
    // So is one that belongs to another user.
    let config = user_config(&env);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
    let out = env.run_with(&["env", "@a"], &[("PGPASSWORD", "pw")]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("belongs to another user (uid 65534)"),
        "{}",
        out.stderr
    );
    // RDSCONN_CONFIG must exist when it is set.
    let out = env.run_with(
        &["env", "@a"],
        &[("RDSCONN_CONFIG", "/nonexistent/rdsconn.toml")],
    );
    out.assert_code(2);
    assert!(
        out.stderr.contains("RDSCONN_CONFIG names"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_dbas_commands_take_a_name_too() {
    let env = env_with(&servers(
        "\n[targets.pg-iam]\nextends = \"pg\"\niam = true\n",
    ));
    // user create: the target's engine; its `iam = true` says how rdsconn
    // logs in, not which method the new user has.
    let r = run(
        &env,
        &[
            "user",
            "create",
            "svc_kerb",
            "@pg-iam",
            "--kerberos",
            "--realm",
            "EXAMPLE.COM",
            "--dry-run",
        ],
    );
    r.assert_code(0);
    assert_eq!(
        r.stdout,
        "CREATE USER \"svc_kerb@EXAMPLE.COM\" WITH LOGIN;\nGRANT rds_ad TO \"svc_kerb@EXAMPLE.COM\";\n"
    );
    // audit: the endpoint, engine, user, dial path and CA bundle from
    // the file; one endpoint, reached (else the audit fails).
    let r = run(&env, &["--output", "json", "audit", "@pg", "--connect"]);
    r.assert_code(0);
    let json = r.json();
    assert_eq!(json["databases"], 1, "{}", r.stdout);
    // The defaults' region.
    assert_eq!(json["region"], "us-east-1", "{}", r.stdout);
    // The typed flag wins: a user that does not exist is refused.
    let r = run(&env, &["audit", "@pg", "--connect", "-u", "nobody_here"]);
    r.assert_code(6);
}
