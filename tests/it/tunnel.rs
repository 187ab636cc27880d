//! `--via ssh://` and `--via socks5h://` against a real sshd bastion (its
//! own /etc/hosts says where the endpoint is, as inside a VPC): SQL, IAM,
//! the hand-off, `check`'s tunnel stage, the proxy with 50 clients through
//! one ssh, ssh's own failures as exit 4 with its message, a tunnel killed
//! mid-session, and never an ssh process left behind.

use std::process::Command;
use std::time::Duration;

use crate::support::activity;
use crate::support::pki::ENDPOINT;
use crate::support::proxy::ProxyProc;
use crate::support::server::free_port;
use crate::support::server::{
    APP_PASSWORD, IAM_ACCESS_KEY, IAM_REGION, IAM_SECRET_KEY, IAM_USER, pki,
};
use crate::support::sshd::{ssh_processes, sshd};
use crate::support::{Run, TestEnv, Watched};

fn ca() -> String {
    pki().ca_file.display().to_string()
}

/// `rdsconn --ca-bundle CA ENGINE -h ENDPOINT USER app DB appdb --via
/// ssh://… EXTRA…` with the test's ssh configuration and the password.
fn through_ssh(env: &TestEnv, engine: &str, ssh: &str, extra: &[&str]) -> Command {
    through(env, ssh, &sshd().url(), &[engine], extra)
}

/// `rdsconn --ca-bundle CA COMMAND… -h ENDPOINT USER app DB appdb --via
/// VIA EXTRA…` (the engine last in `command`, e.g. `["exec", "postgres"]`)
/// with the test's ssh configuration and the password.
fn through(env: &TestEnv, ssh: &str, via: &str, command: &[&str], extra: &[&str]) -> Command {
    let ca = ca();
    let engine = command.last().copied().unwrap_or("postgres");
    let (user_flag, db_flag) = if engine == "postgres" {
        ("-U", "-d")
    } else {
        ("-u", "-D")
    };
    let mut args = vec!["--ca-bundle", &ca];
    args.extend_from_slice(command);
    args.extend([
        "-h", ENDPOINT, user_flag, "app", db_flag, "appdb", "--via", via,
    ]);
    args.extend_from_slice(extra);
    tunneled(env, ssh, &args)
}

/// `rdsconn ARGS` with the test's ssh command, the passwords, and the
/// test's own runtime directory.
fn tunneled(env: &TestEnv, ssh: &str, args: &[&str]) -> Command {
    let mut cmd = env.cmd(args);
    cmd.env("RDSCONN_SSH_COMMAND", ssh)
        .env("PGPASSWORD", APP_PASSWORD)
        .env("MYSQL_PWD", APP_PASSWORD)
        .env("XDG_RUNTIME_DIR", runtime_dir(env));
    cmd
}

/// The test's own runtime directory, where rdsconn makes the tunnel's
/// private socket directory.
fn runtime_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.root.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `rdsconn --output json COMMAND URL --via ssh://…` (`check`, `doctor`)
/// with the test's ssh.
fn json_of(env: &TestEnv, ssh: &str, command: &str, url: &str) -> Run {
    let (ca, via) = (ca(), sshd().url());
    run(tunneled(
        env,
        ssh,
        &[
            "--ca-bundle",
            &ca,
            "--output",
            "json",
            command,
            url,
            "--via",
            &via,
        ],
    ))
}

fn run(mut cmd: Command) -> Run {
    Run::from(cmd.output().unwrap())
}

/// No ssh started with this test's configuration is still running, and
/// no socket (or its directory) is left in the test's runtime directory.
fn assert_no_ssh_left(env: &TestEnv) {
    let marker = env.root.path().join("ssh").join("config");
    let left = ssh_processes(&marker.display().to_string());
    assert!(left.is_empty(), "ssh left running: {left:?}");
    let files: Vec<_> = std::fs::read_dir(runtime_dir(env))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.is_empty(), "left behind: {files:?}");
}

const PG_TLS: &str =
    "SELECT current_user AS u, ssl AS tls FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
const MY_TLS: &str = "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AS u, \
     (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
      WHERE VARIABLE_NAME = 'Ssl_cipher') <> '' AS tls";

#[test]
fn sql_and_iam_through_an_ssh_bastion() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let r = run(through_ssh(&env, "postgres", &ssh, &["-c", PG_TLS]));
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\tt\n", "{}", r.stderr);
    let r = run(through_ssh(&env, "mysql", &ssh, &["-e", MY_TLS]));
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\t1\n", "{}", r.stderr);
    // --info: verified for the endpoint name, through the tunnel.
    let r = run(through_ssh(
        &env,
        "postgres",
        &ssh,
        &["--info", "--output", "json"],
    ));
    r.assert_code(0);
    let info = r.json();
    assert_eq!(info["endpoint"], format!("{ENDPOINT}:5432"), "{info}");
    assert!(
        info["tls"]["certificate"]["sans"]
            .to_string()
            .contains(ENDPOINT),
        "{info}"
    );

    // IAM: the token is signed for the endpoint and its port.
    for (engine, user_flag) in [("postgres", "-U"), ("mysql", "-u")] {
        let ca = ca();
        let via = sshd().url();
        let mut cmd = env.cmd(&[
            "--ca-bundle",
            &ca,
            engine,
            "-h",
            ENDPOINT,
            user_flag,
            IAM_USER,
            "--iam",
            "--via",
            &via,
            if engine == "postgres" { "-d" } else { "-D" },
            "appdb",
            if engine == "postgres" { "-c" } else { "-e" },
            "SELECT 1 AS one",
        ]);
        cmd.env("RDSCONN_SSH_COMMAND", &ssh)
            .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
            .env("AWS_REGION", IAM_REGION);
        let r = run(cmd);
        r.assert_code(0);
        assert_eq!(r.stdout, "one\n1\n", "{engine}: {}", r.stderr);
    }
    assert_no_ssh_left(&env);
}

#[test]
fn the_hand_off_goes_through_the_tunnel() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let r = run(through_ssh(
        &env,
        "postgres",
        &ssh,
        &["--", "-At", "-c", "SELECT current_user"],
    ));
    r.assert_code(0);
    assert_eq!(r.stdout, "app\n", "{}", r.stderr);
    let r = run(through_ssh(
        &env,
        "mysql",
        &ssh,
        &[
            "--client",
            "mariadb",
            "--",
            "-N",
            "-B",
            "-e",
            "SELECT CURRENT_USER()",
        ],
    ));
    r.assert_code(0);
    assert!(r.stdout.starts_with("app@"), "{}{}", r.stdout, r.stderr);
    assert_no_ssh_left(&env);
}

#[test]
fn check_reports_the_tunnel_stage() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let r = json_of(
        &env,
        &ssh,
        "check",
        &format!("postgres://app@{ENDPOINT}/appdb"),
    );
    r.assert_code(0);
    let t = &r.json()["targets"][0];
    let stages: Vec<(String, String)> = t["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("tunnel", "ok"),
            ("dns", "skipped"),
            ("tcp", "ok"),
            ("tls", "ok"),
            ("auth", "ok"),
            ("query", "ok")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{t:#}"
    );
    assert!(t["stages"][0]["duration_ms"].as_f64().is_some(), "{t:#}");
    assert_no_ssh_left(&env);
}

/// ssh's own failures: exit 4, ssh's message, the layer named.
#[test]
fn ssh_failures_are_network_errors_with_sshs_message() {
    let env = TestEnv::new();
    let wrong_key = sshd().client(&env, "other_key", true);
    let r = run(through_ssh(
        &env,
        "postgres",
        &wrong_key,
        &["-c", "SELECT 1"],
    ));
    r.assert_code(4);
    assert!(
        r.stderr.contains("ssh to bastion 127.0.0.1") && r.stderr.contains("Permission denied"),
        "{}",
        r.stderr
    );
    // The fix comes with it, and the bastion's port is in the message.
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{}", sshd().port)),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint:") && r.stderr.contains("ssh-add"),
        "{}",
        r.stderr
    );
    assert_no_ssh_left(&env);

    let env = TestEnv::new();
    let unknown_host = sshd().client(&env, "user_key", false);
    let r = run(through_ssh(
        &env,
        "postgres",
        &unknown_host,
        &["-c", "SELECT 1"],
    ));
    r.assert_code(4);
    assert!(
        r.stderr.contains("Host key verification failed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("ssh -p {} root@127.0.0.1", sshd().port))
            && r.stderr.contains("known_hosts"),
        "{}",
        r.stderr
    );
    assert_no_ssh_left(&env);

    // A bastion that is not there.
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let down = format!("ssh://root@127.0.0.1:{}", free_port());
    let r = run(through(
        &env,
        &ssh,
        &down,
        &["postgres"],
        &["-c", "SELECT 1"],
    ));
    r.assert_code(4);
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert_no_ssh_left(&env);
}

/// The bastion lets ssh in but will not open the channel to the endpoint
/// (forwarding refused for the user; nothing on the endpoint's port as
/// the bastion sees it): exit 4 with ssh's own words and the layer, not
/// a connection closed for no reason.
#[test]
fn a_channel_the_bastion_will_not_open_is_sshs_own_error() {
    let env = TestEnv::new();
    let restricted = sshd().client(&env, "restricted_key", true);
    let r = run(through_ssh(
        &env,
        "postgres",
        &restricted,
        &["-c", "SELECT 1"],
    ));
    r.assert_code(4);
    assert!(
        r.stderr
            .starts_with(&format!("error: connecting to {ENDPOINT}:5432 via ssh://"))
            && r.stderr.contains(&format!(
                "caused by: ssh to bastion 127.0.0.1:{}: channel ",
                sshd().port
            ))
            && r.stderr
                .contains("open failed: administratively prohibited"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "hint: the bastion did not open a channel to {ENDPOINT}:5432"
        )),
        "{}",
        r.stderr
    );
    assert_no_ssh_left(&env);

    // The endpoint's port is closed where the bastion is; both engines.
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    for (engine, port_flag) in [("postgres", "-p"), ("mysql", "-P")] {
        let r = run(through_ssh(
            &env,
            engine,
            &ssh,
            &[port_flag, "1", "-e", "SELECT 1"],
        ));
        r.assert_code(4);
        assert!(
            r.stderr.contains(&format!(
                "caused by: ssh to bastion 127.0.0.1:{}: channel ",
                sshd().port
            )) && r
                .stderr
                .contains("open failed: connect failed: Connection refused"),
            "{engine}: {}",
            r.stderr
        );
    }
    // The hand-off: the native clients get ssh's words from rdsconn's
    // proxy.
    for (engine, port_flag, client) in [
        ("postgres", "-p", vec!["--", "-c", "SELECT 1"]),
        (
            "mysql",
            "-P",
            vec!["--client", "mariadb", "--", "-e", "SELECT 1"],
        ),
    ] {
        let mut args = vec![port_flag, "1"];
        args.extend(client);
        let r = run(through_ssh(&env, engine, &ssh, &args));
        assert_ne!(r.code, 0, "{engine}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("open failed: connect failed: Connection refused"),
            "{engine}: {}",
            r.stderr
        );
    }
    // `check` reports it with ssh's words.
    let r = json_of(
        &env,
        &ssh,
        "check",
        &format!("postgres://app@{ENDPOINT}:1/appdb"),
    );
    r.assert_code(4);
    let t = &r.json()["targets"][0];
    assert!(
        t.to_string()
            .contains("open failed: connect failed: Connection refused"),
        "{t:#}"
    );
    assert_no_ssh_left(&env);
}

/// On a terminal, ssh asks its own questions there (no `BatchMode`): an
/// unknown bastion's host key is shown, and "yes" lets the run go on and
/// records the key, as the user's ssh would.
#[test]
fn ssh_asks_its_host_key_question_on_the_terminal() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", false);
    let config = env.root.path().join("ssh").join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("StrictHostKeyChecking yes", "StrictHostKeyChecking ask"),
    )
    .unwrap();
    let inner = through_ssh(&env, "postgres", &ssh, &["-c", "SELECT 42 AS answer"]);
    let r = run(crate::support::on_a_terminal(&inner, "(yes/no", "yes"));
    r.assert_code(0);
    assert!(
        r.stdout.contains("authenticity of host") && r.stdout.contains("42"),
        "{}",
        r.stdout
    );
    let known = std::fs::read_to_string(env.root.path().join("ssh").join("known_hosts")).unwrap();
    assert!(known.contains("127.0.0.1"), "{known}");
    assert_no_ssh_left(&env);
}

/// The tunnel dies mid-session: the session ends with an error, and
/// nothing is left behind.
#[test]
fn a_tunnel_killed_mid_session_ends_it_cleanly() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let cmd = through_ssh(
        &env,
        "postgres",
        &ssh,
        &[
            "-vv",
            "-c",
            "SELECT pg_sleep(120) /* rdsconn-tunnel-killed */",
        ],
    );
    let mut watched = Watched::spawn(cmd);
    watched.wait_for("ready on");
    let port = crate::support::pg::server(crate::support::server::Variant::Good).port;
    activity::wait_for("the statement to run through the tunnel", || {
        activity::running(&env, "postgres", port, "rdsconn-tunnel-killed") == 1
    });
    // The session is running its statement: end the tunnel under it.
    let marker = env
        .root
        .path()
        .join("ssh")
        .join("config")
        .display()
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while ssh_processes(&marker).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no ssh to kill");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("pkill")
        // SIGKILL: ssh is gone before its socket closes under the session.
        .args(["-KILL", "-f", &marker])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = watched.finish();
    // A connection lost under a statement is a network failure.
    r.assert_code(4);
    assert!(
        r.stderr
            .contains("error: the connection to the server was lost during the statement"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: the tunnel ssh://"), "{}", r.stderr);
    assert_no_ssh_left(&env);
}

/// The proxy's client whose channel the bastion will not open gets ssh's
/// words in its error, as a direct session does.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_passes_on_why_the_bastion_refused_the_channel() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let via = sshd().url();
    let proxy = ProxyProc::start(
        &env,
        &["postgres", "-h", ENDPOINT, "-p", "1", "--via", &via],
        &[("RDSCONN_SSH_COMMAND", &ssh), ("PGPASSWORD", APP_PASSWORD)],
    );
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.port())
        .user("app")
        .dbname("appdb")
        .password("ignored: the proxy logs in with its own")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_mins(1));
    let Err(e) = config.connect(tokio_postgres::NoTls).await else {
        panic!("connected to a closed port\n{}", proxy.log());
    };
    let said = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        said.contains("open failed: connect failed: Connection refused"),
        "{e}: {said}\n{}",
        proxy.log()
    );

    let proxy = ProxyProc::start(
        &env,
        &["mysql", "-h", ENDPOINT, "-P", "1", "--via", &via],
        &[("RDSCONN_SSH_COMMAND", &ssh), ("MYSQL_PWD", APP_PASSWORD)],
    );
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.port())
        .user(Some("app"))
        .pass(Some("ignored: the proxy logs in with its own"))
        .db_name(Some("appdb"))
        .prefer_socket(false);
    let Err(e) = mysql_async::Conn::new(opts).await else {
        panic!("connected to a closed port\n{}", proxy.log());
    };
    assert!(
        e.to_string()
            .contains("open failed: connect failed: Connection refused"),
        "{e}\n{}",
        proxy.log()
    );
    // Refused in place of a greeting: no SQL state in the message.
    assert!(!e.to_string().contains("#HY000"), "{e}");
}

/// One ssh for all of the proxy's clients.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_shares_one_ssh_among_fifty_clients() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let via = sshd().url();
    let proxy = ProxyProc::start(
        &env,
        &["postgres", "-h", ENDPOINT, "--via", &via],
        &[("RDSCONN_SSH_COMMAND", &ssh), ("PGPASSWORD", APP_PASSWORD)],
    );
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.port())
        .user("app")
        .dbname("appdb")
        .password("ignored: the proxy logs in with its own")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_mins(1));
    let clients = crate::support::proxy::concurrent_sessions(&proxy, &config, 50).await;
    let mut pids: Vec<i32> = clients.iter().map(|(_, p)| *p).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 50);
    let marker = env
        .root
        .path()
        .join("ssh")
        .join("config")
        .display()
        .to_string();
    assert_eq!(
        ssh_processes(&marker).len(),
        1,
        "{:?}",
        ssh_processes(&marker)
    );
    drop(clients);

    // The ssh dies: the next client gets a new one (after a back-off).
    assert!(
        Command::new("pkill")
            .args(["-f", &marker])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while !ssh_processes(&marker).is_empty() {
        assert!(std::time::Instant::now() < deadline, "ssh did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        ssh_processes(&marker).len(),
        1,
        "{:?}",
        ssh_processes(&marker)
    );
    drop(client);
    drop(proxy);
}

/// SOCKS5 from the same bastion (`ssh -D`): socks5h resolves the endpoint
/// name at the proxy, as `ALL_PROXY` does too; socks5 resolves it here,
/// where it does not resolve.
#[test]
fn socks5h_resolves_at_the_proxy() {
    let env = TestEnv::new();
    let (socks, port) = sshd().socks(&env);
    let ca = ca();
    let pg = |via: Option<String>, all_proxy: Option<String>, no_proxy: &str| {
        let mut args = vec![
            "--ca-bundle".to_string(),
            ca.clone(),
            "postgres".into(),
            "-h".into(),
            ENDPOINT.into(),
            "-U".into(),
            "app".into(),
            "-d".into(),
            "appdb".into(),
        ];
        if let Some(v) = via {
            args.extend(["--via".to_string(), v]);
        }
        args.extend([
            "--connect-timeout".to_string(),
            "20s".into(),
            "-c".into(),
            PG_TLS.into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.cmd(&args);
        cmd.env("PGPASSWORD", APP_PASSWORD);
        if let Some(a) = all_proxy {
            cmd.env("ALL_PROXY", a);
        }
        if !no_proxy.is_empty() {
            cmd.env("NO_PROXY", no_proxy);
        }
        run(cmd)
    };
    let r = pg(Some(format!("socks5h://127.0.0.1:{port}")), None, "");
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\tt\n", "{}", r.stderr);
    let all_proxy = Some(format!("socks5h://127.0.0.1:{port}"));
    let r = pg(None, all_proxy.clone(), "");
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\tt\n", "{}", r.stderr);
    // NO_PROXY names another domain: still through the proxy.
    let r = pg(None, all_proxy.clone(), "localhost,example.com");
    r.assert_code(0);
    // NO_PROXY exempts the endpoint's domain: dialed directly, where the
    // name does not resolve.
    let r = pg(None, all_proxy, "localhost, .amazonaws.com");
    r.assert_code(4);
    assert!(
        r.stderr.contains(&format!("resolving {ENDPOINT}")),
        "{}",
        r.stderr
    );
    let r = pg(Some(format!("socks5://127.0.0.1:{port}")), None, "");
    r.assert_code(4);
    assert!(r.stderr.contains(ENDPOINT), "{}", r.stderr);
    // A password for the proxy only from the environment.
    let r = pg(
        Some(format!("socks5h://u:secret@127.0.0.1:{port}")),
        None,
        "",
    );
    r.assert_code(2);
    assert!(!r.stderr.contains("secret"), "{}", r.stderr);
    drop(socks);
}

/// `env` cannot hand a tunnel that ends with rdsconn to another program.
#[test]
fn env_with_a_tunnel_is_refused_with_the_proxy_hint() {
    let env = TestEnv::new();
    let via = sshd().url();
    let r = env.run_with(
        &[
            "env", "postgres", "-h", ENDPOINT, "-U", "app", "--via", &via,
        ],
        &[("PGPASSWORD", APP_PASSWORD)],
    );
    r.assert_code(2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("rdsconn proxy postgres"), "{}", r.stderr);
}

/// `exec` through a tunnel: the command reaches the endpoint through
/// rdsconn's proxy on a private socket for as long as it runs.
#[test]
fn exec_runs_tools_and_drivers_through_the_tunnel() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let via = sshd().url();
    let py = crate::support::python().display().to_string();
    let node_modules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules");
    let ca = ca();
    let exec = |engine: &str, program: &[&str]| {
        let mut args = vec![
            "--ca-bundle",
            &ca,
            "exec",
            engine,
            "-h",
            ENDPOINT,
            "-u",
            "app",
            "-d",
            "appdb",
            "--via",
            &via,
            "--",
        ];
        args.extend_from_slice(program);
        let mut cmd = env.cmd(&args);
        cmd.env("RDSCONN_SSH_COMMAND", &ssh)
            .env("PGPASSWORD", APP_PASSWORD)
            .env("MYSQL_PWD", APP_PASSWORD)
            .env(
                "NODE_PATH",
                std::env::var_os("RDSCONN_TEST_NODE_MODULES")
                    .unwrap_or(node_modules.clone().into()),
            );
        run(cmd)
    };
    let r = exec("postgres", &["psql", "-At", "-c", "SELECT current_user"]);
    r.assert_code(0);
    assert_eq!(r.stdout, "app\n", "{}", r.stderr);
    let asyncpg = "import asyncio, os, asyncpg\n\
                   async def main():\n    c = await asyncpg.connect(os.environ['DATABASE_URL'])\n    \
                   print(await c.fetchval('SELECT current_user'))\n    await c.close()\n\
                   asyncio.run(main())";
    let r = exec("postgres", &[&py, "-c", asyncpg]);
    r.assert_code(0);
    assert_eq!(r.stdout, "app\n", "{}", r.stderr);
    let r = exec("mysql", &["mariadb-admin", "ping"]);
    r.assert_code(0);
    assert!(r.stdout.contains("alive"), "{}{}", r.stdout, r.stderr);
    let mysql2 = "const m = require('mysql2/promise'); (async () => { \
                  const c = await m.createConnection(process.env.DATABASE_URL); \
                  const [r] = await c.query('SELECT CURRENT_USER() AS u'); \
                  console.log(r[0].u.split('@')[0]); await c.end(); })()\
                  .catch((e) => { console.error(e.message); process.exit(3); });";
    let r = exec("mysql", &["node", "-e", mysql2]);
    r.assert_code(0);
    assert_eq!(r.stdout, "app\n", "{}", r.stderr);
    assert_no_ssh_left(&env);
}

/// `kill PID` (SIGTERM to rdsconn alone, as a CI runner or a supervisor
/// sends it) while the tunnel is being set up, while a statement runs,
/// while psql or an `exec` command runs through it: rdsconn ends and its
/// ssh with it.
#[test]
fn sigterm_to_rdsconn_leaves_no_ssh_behind() {
    let pg_port = crate::support::pg::server(crate::support::server::Variant::Good).port;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_via = format!("ssh://root@{}", silent.local_addr().unwrap());
    let bastion = sshd().url();
    // (what runs, its extra arguments, what shows it is under way)
    let cases: [(&str, Vec<&str>, Option<&str>); 4] = [
        ("set-up", vec!["-c", "SELECT 1"], None),
        (
            "statement",
            vec!["-c", "SELECT pg_sleep(120) /* rdsconn-term-c */"],
            Some("rdsconn-term-c"),
        ),
        (
            "psql",
            vec!["--", "-c", "SELECT pg_sleep(120) /* rdsconn-term-psql */"],
            Some("rdsconn-term-psql"),
        ),
        ("exec", vec![], None),
    ];
    for (what, extra, marker) in cases {
        let env = TestEnv::new();
        let ssh = sshd().client(&env, "user_key", true);
        let via = if what == "set-up" {
            &silent_via
        } else {
            &bastion
        };
        let (command, extra) = if what == "exec" {
            (&["exec", "postgres"][..], vec!["-v", "--", "sleep", "120"])
        } else {
            (&["postgres"][..], [&["-v"][..], &extra].concat())
        };
        let watched = Watched::spawn(through(&env, &ssh, via, command, &extra));
        // ssh runs: the tunnel is being set up (or is up).
        let ssh_marker = env.root.path().join("ssh").join("config");
        activity::wait_for("ssh to start", || {
            !ssh_processes(&ssh_marker.display().to_string()).is_empty()
        });
        match (what, marker) {
            (_, Some(m)) => activity::wait_for("the statement to run", || {
                activity::running(&env, "postgres", pg_port, m) == 1
            }),
            ("exec", None) => {
                // The command runs under rdsconn.
                let parent = watched.id().to_string();
                activity::wait_for("the exec command to run", || {
                    Command::new("pgrep")
                        .args(["-P", &parent, "-x", "sleep"])
                        .output()
                        .is_ok_and(|o| o.status.success())
                });
            }
            _ => {}
        }
        let killed = Command::new("kill")
            .args(["-TERM", &watched.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "{what}");
        let code = watched.exit_code();
        assert_eq!(code, Some(143), "{what}: {code:?}");
        activity::wait_for("ssh to end", || {
            ssh_processes(&ssh_marker.display().to_string()).is_empty()
        });
        assert_no_ssh_left(&env);
    }
    drop(silent);
}

/// Even `kill -9` of rdsconn takes its ssh with it (the kernel's parent
/// death signal, set through util-linux's setpriv).
#[test]
fn kill_9_of_rdsconn_takes_its_ssh_with_it() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let pg_port = crate::support::pg::server(crate::support::server::Variant::Good).port;
    let cmd = through_ssh(
        &env,
        "postgres",
        &ssh,
        &["-c", "SELECT pg_sleep(120) /* rdsconn-kill-9 */"],
    );
    let watched = Watched::spawn(cmd);
    activity::wait_for("the statement to run", || {
        activity::running(&env, "postgres", pg_port, "rdsconn-kill-9") == 1
    });
    let marker = env
        .root
        .path()
        .join("ssh")
        .join("config")
        .display()
        .to_string();
    assert_eq!(ssh_processes(&marker).len(), 1);
    let killed = Command::new("kill")
        .args(["-KILL", &watched.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(watched.exit_code(), None);
    activity::wait_for("ssh to end", || ssh_processes(&marker).is_empty());
}

/// `--connect-timeout` bounds the tunnel's set-up: a bastion that accepts
/// TCP and never speaks SSH ends the run as a timeout (exit 4), and the
/// ssh started for it is gone.
#[test]
fn the_connect_timeout_bounds_the_tunnel_set_up() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let via = format!("ssh://root@{}", silent.local_addr().unwrap());
    let r = run(through(
        &env,
        &ssh,
        &via,
        &["postgres"],
        &["--connect-timeout", "2s", "-c", "SELECT 1"],
    ));
    r.assert_code(4);
    assert!(
        r.stderr.contains("timed out") && r.stderr.contains("tunnel"),
        "{}",
        r.stderr
    );
    assert_no_ssh_left(&env);
    drop(silent);
}

/// doctor's connection lines go through the tunnel too.
#[test]
fn doctor_checks_through_the_tunnel() {
    let env = TestEnv::new();
    let ssh = sshd().client(&env, "user_key", true);
    let r = json_of(
        &env,
        &ssh,
        "doctor",
        &format!("postgres://app@{ENDPOINT}/appdb"),
    );
    r.assert_code(0);
    let j = r.json();
    let status = |name: &str| crate::support::doctor_line(&j, name)["status"].clone();
    assert_eq!(status("connect: tunnel"), "ok", "{j}");
    assert_eq!(status("connect: query"), "ok", "{j}");
    assert_no_ssh_left(&env);
}

/// The SSM stand-ins: the API stub (its request log) and the directory of
/// the stand-in `session-manager-plugin`; EC2 is moto's, with a running
/// and a stopped `Name=bastion` and two running `Name=twin`.
struct Ssm {
    stub: std::process::Child,
    url: String,
    log: std::path::PathBuf,
    plugin_log: std::path::PathBuf,
    /// The running `Name=bastion` instance.
    bastion: String,
}

impl Ssm {
    fn start(env: &TestEnv) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/ssm");
        let log = env.root.path().join("ssm-api.jsonl");
        let ec2 = crate::support::moto::ec2(
            IAM_REGION,
            &serde_json::json!([
                {"tags": {"Name": "bastion"}},
                {"tags": {"Name": "bastion"}, "state": "stopped"},
                {"tags": {"Name": "twin"}, "count": 2},
            ]),
        );
        let instances = ec2.as_object().unwrap();
        let bastion = instances
            .iter()
            .find(|(_, i)| i["tags"]["Name"] == "bastion" && i["state"] == "running")
            .map_or_else(
                || panic!("no running bastion in {ec2}"),
                |(id, _)| id.clone(),
            );
        // SSM knows the running instances.
        let managed: serde_json::Map<String, serde_json::Value> = instances
            .iter()
            .filter(|(_, i)| i["state"] == "running")
            .map(|(id, i)| (id.clone(), i["tags"].clone()))
            .collect();
        let mut stub = Command::new("python3")
            .arg(dir.join("ssm_stub.py"))
            .arg(&log)
            .arg(serde_json::Value::Object(managed).to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(stub.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("stub said {line:?}"));
        Self {
            stub,
            url: format!("http://127.0.0.1:{port}"),
            log,
            plugin_log: env.root.path().join("ssm-plugin.jsonl"),
            bastion,
        }
    }

    /// `rdsconn ARGS` with the stubs: the API, the plugin first in PATH
    /// (unless `plugin` is false), AWS credentials, the plugin's far end.
    fn cmd(&self, env: &TestEnv, args: &[&str], plugin: bool) -> Command {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/ssm");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut cmd = env.cmd(args);
        if plugin {
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        cmd.env("AWS_ENDPOINT_URL_SSM", &self.url)
            .env("AWS_ENDPOINT_URL_EC2", crate::support::moto::url())
            .env("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY)
            .env("AWS_REGION", IAM_REGION)
            .env("SSM_PLUGIN_LOG", &self.plugin_log)
            .env(
                "SSM_PLUGIN_FORWARD",
                format!(
                    "127.0.0.1:{}",
                    crate::support::pg::server(crate::support::server::Variant::Good).port
                ),
            )
            .env("PGPASSWORD", APP_PASSWORD);
        cmd
    }

    /// `rdsconn [GLOBAL…] postgres … --via VIA -c PG_TLS` with the stubs
    /// (the plugin on PATH if `plugin`).
    fn pg_cmd(&self, env: &TestEnv, via: &str, plugin: bool, global: &[&str]) -> Command {
        let ca = ca();
        let mut args = vec!["--ca-bundle", &ca];
        args.extend_from_slice(global);
        args.extend([
            "postgres", "-h", ENDPOINT, "-U", "app", "-d", "appdb", "--via", via, "-c", PG_TLS,
        ]);
        self.cmd(env, &args, plugin)
    }

    /// [`Ssm::pg_cmd`], run.
    fn pg(&self, env: &TestEnv, via: &str, plugin: bool, global: &[&str]) -> Run {
        run(self.pg_cmd(env, via, plugin, global))
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.log)
    }

    fn plugin_runs(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.plugin_log)
    }

    /// Stand-in plugins still running for this stub.
    fn plugins_left(&self) -> Vec<String> {
        crate::support::sshd::processes(&self.url)
    }
}

impl Drop for Ssm {
    fn drop(&mut self) {
        let _ = self.stub.kill();
        let _ = self.stub.wait();
    }
}

fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `--via ssm://tag:Name=VALUE`: the running instance from EC2's
/// `DescribeInstances`, `StartSession` with the port-forwarding document
/// for the endpoint, the plugin run as the AWS CLI runs it; then SQL
/// through it, verified.
#[test]
fn ssm_sessions_forward_to_the_endpoint() {
    let env = TestEnv::new();
    let ssm = Ssm::start(&env);
    let pg = |via: &str| ssm.pg(&env, via, true, &[]);
    let r = pg("ssm://tag:Name=bastion");
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\tt\n", "{}", r.stderr);
    let calls = ssm.requests();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0]["target"], "AmazonSSM.StartSession");
    assert!(calls.iter().all(|c| c["signed"] == true), "{calls:#?}");
    // The session is ended when rdsconn ends, as the AWS CLI ends it.
    assert_eq!(calls[1]["target"], "AmazonSSM.TerminateSession");
    assert_eq!(calls[1]["body"]["SessionId"], "rdsconn-test-0123456789");
    let start = &calls[0]["body"];
    // The running bastion, not the stopped one.
    assert_eq!(start["Target"], ssm.bastion.as_str());
    assert_eq!(
        start["DocumentName"],
        "AWS-StartPortForwardingSessionToRemoteHost"
    );
    assert_eq!(start["Parameters"]["host"], serde_json::json!([ENDPOINT]));
    assert_eq!(
        start["Parameters"]["portNumber"],
        serde_json::json!(["5432"])
    );
    let runs = ssm.plugin_runs();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["operation"], "StartSession");
    assert_eq!(runs[0]["region"], IAM_REGION);
    assert_eq!(runs[0]["endpoint"], ssm.url);
    assert_eq!(runs[0]["request"], *start);
    assert_eq!(runs[0]["response"]["SessionId"], "rdsconn-test-0123456789");
    // The session's token never in the plugin's argv (`ps` shows argv).
    assert_eq!(runs[0]["argv1"], "AWS_SSM_START_SESSION_RESPONSE");
    assert!(
        !runs[0]["argv"].to_string().contains("stand-in-token"),
        "{}",
        runs[0]
    );
    assert!(ssm.plugins_left().is_empty(), "{:?}", ssm.plugins_left());

    // An instance id goes straight to StartSession; a plugin that never
    // says "Waiting for connections" is ready when its port listens.
    let via = format!("ssm://{}", ssm.bastion);
    let mut quiet = ssm.pg_cmd(&env, &via, true, &[]);
    quiet.env("SSM_PLUGIN_QUIET", "1");
    let r = run(quiet);
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\tt\n", "{}", r.stderr);
    let calls = ssm.requests();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert_eq!(calls[2]["target"], "AmazonSSM.StartSession");
    assert_eq!(calls[2]["body"]["Target"], ssm.bastion.as_str());
    assert!(ssm.plugins_left().is_empty(), "{:?}", ssm.plugins_left());
}

/// A session the service started is terminated whatever ends the run
/// while its tunnel is still starting: the connect timeout, or SIGTERM.
#[test]
fn an_ssm_session_is_terminated_when_the_start_is_cut_short() {
    let env = TestEnv::new();
    let ssm = Ssm::start(&env);
    let via = format!("ssm://{}", ssm.bastion);
    let terminated = |ssm: &Ssm| {
        ssm.requests()
            .iter()
            .filter(|c| c["target"] == "AmazonSSM.TerminateSession")
            .count()
    };
    let mut hang = ssm.pg_cmd(&env, &via, true, &[]);
    hang.args(["--connect-timeout", "2s"])
        .env("SSM_PLUGIN_HANG", "1");
    let r = run(hang);
    r.assert_code(4);
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    assert_eq!(
        ssm.plugin_runs().len(),
        1,
        "the plugin ran after StartSession"
    );
    assert_eq!(terminated(&ssm), 1, "{:#?}", ssm.requests());
    assert!(ssm.plugins_left().is_empty(), "{:?}", ssm.plugins_left());

    // SIGTERM once the plugin runs (StartSession has answered).
    let mut hang = ssm.pg_cmd(&env, &via, true, &[]);
    hang.args(["--connect-timeout", "60s"])
        .env("SSM_PLUGIN_HANG", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = hang.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while ssm.plugin_runs().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the plugin never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let r = Run::from(child.wait_with_output().unwrap());
    r.assert_code(143);
    assert_eq!(terminated(&ssm), 2, "{:#?}", ssm.requests());
    assert!(ssm.plugins_left().is_empty(), "{:?}", ssm.plugins_left());
}

/// `ssm://` targets and settings that cannot work stop before any session
/// is started: a tag on two running instances or on none, a region that
/// is not a region's name, no plugin.
#[test]
fn unusable_ssm_targets_stop_before_a_session_starts() {
    let env = TestEnv::new();
    let ssm = Ssm::start(&env);
    // Two instances with the tag: name one.
    let r = ssm.pg(&env, "ssm://tag:Name=twin", true, &[]);
    r.assert_code(4);
    assert!(
        r.stderr.contains("2 running instances") && r.stderr.contains("ssm://INSTANCE-ID"),
        "{}",
        r.stderr
    );
    // No running instance with the tag.
    let r = ssm.pg(&env, "ssm://tag:Name=nowhere", true, &[]);
    r.assert_code(4);
    assert!(
        r.stderr
            .contains("no running EC2 instance in us-east-1 has the tag Name=nowhere"),
        "{}",
        r.stderr
    );
    // Neither reached StartSession.
    assert!(ssm.requests().is_empty(), "{:?}", ssm.requests());

    // The region becomes the API's host name: a region's name only.
    let via = format!("ssm://{}", ssm.bastion);
    let r = ssm.pg(&env, &via, true, &["--region", "evil.example/#"]);
    r.assert_code(2);
    assert!(
        r.stderr
            .contains(r#"invalid region "evil.example/#" from --region"#),
        "{}",
        r.stderr
    );
    assert!(ssm.requests().is_empty(), "{:?}", ssm.requests());

    // No plugin installed: the install hint.
    let r = ssm.pg(&env, &via, false, &[]);
    r.assert_code(4);
    assert!(
        r.stderr.contains("session-manager-plugin") && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );

    assert!(ssm.plugins_left().is_empty(), "{:?}", ssm.plugins_left());
}

/// `check` through an SSM session names the tunnel stage.
#[test]
fn ssm_check_reports_the_tunnel_stage() {
    let env = TestEnv::new();
    let ssm = Ssm::start(&env);
    let ca = ca();
    let mut cmd = ssm.cmd(
        &env,
        &[
            "--ca-bundle",
            &ca,
            "--output",
            "json",
            "check",
            &format!("postgres://app@{ENDPOINT}/appdb"),
            "--via",
            &format!("ssm://{}", ssm.bastion),
        ],
        true,
    );
    cmd.env("PGPASSWORD", APP_PASSWORD);
    let r = run(cmd);
    r.assert_code(0);
    assert_eq!(
        r.json()["targets"][0]["stages"][0]["name"],
        "tunnel",
        "{}",
        r.stdout
    );
    assert!(ssm.plugins_left().is_empty(), "{:?}", ssm.plugins_left());
}

/// What ssh (or a bastion through it) writes is never printed raw: an
/// `ssh` that says terminal escapes and exits is reported escaped.
#[test]
fn a_hostile_ssh_message_is_escaped() {
    let env = TestEnv::new();
    let script = env.root.path().join("fake-ssh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'Received disconnect: \\033[2K\\033]0;pwned\\007 bye\\n' >&2\nexit 255\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run(through_ssh(
        &env,
        "postgres",
        &script.display().to_string(),
        &["-c", "SELECT 1"],
    ));
    r.assert_code(4);
    assert!(
        r.stderr.contains(r"\x1b[2K") && r.stderr.contains("bye"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{7}'),
        "{:?}",
        r.stderr
    );
}

/// ssh makes its forward's socket file a moment before it listens on it:
/// a connection in that moment waits instead of failing ("Connection
/// refused"). The stand-in ssh here keeps that moment open for 300 ms.
#[test]
fn a_forward_socket_that_is_not_listening_yet_is_waited_for() {
    let env = TestEnv::new();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/slow_listen_ssh.py");
    let ssh = format!("python3 {}", script.display());
    let mut cmd = through_ssh(&env, "postgres", &ssh, &["-c", PG_TLS]);
    cmd.env(
        "SLOW_SSH_FORWARD",
        crate::support::pg::server(crate::support::server::Variant::Good)
            .port
            .to_string(),
    );
    let r = run(cmd);
    r.assert_code(0);
    assert_eq!(r.stdout, "u\ttls\napp\tt\n", "{}", r.stderr);
    assert!(
        crate::support::sshd::processes(&script.display().to_string()).is_empty(),
        "the stand-in ssh was left running"
    );
}

/// A hostile `--via ssh://` user or host is refused by rdsconn itself
/// (exit 2) before any ssh starts: rdsconn does not rely on the ssh
/// build's own check (OpenSSH >= 9.6) to keep them from a shell.
#[test]
fn hostile_ssh_users_and_hosts_are_refused_before_ssh_starts() {
    let env = TestEnv::new();
    let marker = env.root.path().join("ssh-ran");
    let ssh = format!("touch {}; exec ssh", marker.display());
    for via in [
        "ssh://-oProxyCommand=id@bastion.example",
        "ssh://a;id@bastion.example",
        "ssh://a%3Bid@bastion.example",
        "ssh://%24(id)@bastion.example",
        "ssh://a%60id%60@bastion.example",
        "ssh://a%20b@bastion.example",
        "ssh://a%27b@bastion.example",
        "ssh://a%22b@bastion.example",
        "ssh://a%0Ab@bastion.example",
        "ssh://-oProxyCommand@bastion.example",
        "ssh://user@-oProxyCommand",
        "ssh://user@-bastion.example",
        "ssh://user@bastion..example",
    ] {
        let run = Run::from(
            tunneled(
                &env,
                &ssh,
                &[
                    "postgres", "-h", ENDPOINT, "-U", "app", "--via", via, "-c", "SELECT 1",
                ],
            )
            .output()
            .unwrap(),
        );
        run.assert_code(2);
        assert!(run.stderr.contains("--via"), "{via}: {}", run.stderr);
        assert_eq!(
            run.stderr
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{via}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains('\n') || !run.stderr.contains("a\nb"),
            "{}",
            run.stderr
        );
        assert!(!marker.exists(), "{via}: ssh was started");
    }
}
