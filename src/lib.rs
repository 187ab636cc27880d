//! rdsconn: reach Amazon RDS / Aurora MySQL and PostgreSQL over TLS whose
//! server identity is verified, with IAM auth tokens and the RDS CA bundle
//! handled for you.
//!
//! The binary is a thin shell around [`run`]; everything it does is
//! reachable (and testable) in-process.
//!
//! - [`cli`]: the command line (clap derive types).
//! - `cmd`: one module per subcommand.
//! - `clientargs`: what may follow `--` for a native client.
//! - `ca`: the RDS CA bundle: embedded copy, cache, fetch, root store.
//! - `aws`: region resolution, credentials, STS identity and clock skew.
//! - `resolve`: flags, URL, RDS API and environment → one connection
//!   request (engine, endpoint, dial path, user, database, password).
//! - [`target`]: endpoint hosts, URLs and the region an endpoint implies.
//! - `iam`: the signing region, minting a token, the proxy's token cache.
//! - [`token`]: IAM auth tokens (pure; time is a parameter).
//! - `tls`: verify-full / verify-ca rustls configs, TLS failures.
//! - `wire`: protocol code rdsconn speaks itself (MySQL handshake,
//!   plugins, server side and relay; PostgreSQL `SSLRequest`).
//! - `net`: the connection error, DNS/TCP dialing, stage timeouts, the
//!   TLS handshake.
//! - `engine`: the database trait and its implementations.
//! - `native`: the hand-off to native clients (`native::Client`), child
//!   processes and signal forwarding.
//! - `proxy`: `rdsconn proxy`'s listeners and per-engine client side, and
//!   the hand-off through a private socket (`proxy::through_proxy`).
//! - `rds`: endpoint discovery through the RDS API.
//! - `passfile`: `~/.pgpass` and the MySQL option files' passwords.
//! - `preflight`: `doctor`'s checklist and its checks before the
//!   connection (region, credentials, identity and clock, database, IAM,
//!   CA).
//! - `probe`: the staged check (DNS, TCP, TLS, auth, query) of `check`
//!   and `doctor`.
//! - `files`: private directories, atomic 0600 files, lock files.
//! - `secrets`: passwords from AWS Secrets Manager (`--secret`,
//!   `--master-secret`) and the proxy's secret cache.
//! - `secret`: the redacted secret, `Auth`, randomness, constant-time
//!   comparison.
//! - `output`: everything written to stdout.
//! - `signals`: SIGINT / SIGTERM for the commands that stop early on them.
//! - `text`: escaping text from servers and clients before it is shown.
//! - [`error`]: error categories and exit codes.

pub(crate) mod aws;
pub(crate) mod build_info;
pub(crate) mod ca;
pub mod cli;
pub(crate) mod clientargs;
pub(crate) mod cmd;

/// What `rdsconn --version --verbose` prints: the version, commit, build
/// date, target, compiler and TLS stack.
pub fn verbose_version() -> String {
    cmd::version::verbose_text()
}
pub(crate) mod config;
pub(crate) mod engine;
pub mod error;
pub(crate) mod files;
pub(crate) mod iam;
pub mod named;
pub(crate) mod native;
pub(crate) mod net;
pub(crate) mod ops;
pub(crate) mod output;
pub(crate) mod passfile;
pub(crate) mod pgservice;
pub(crate) mod preflight;
pub(crate) mod probe;
pub(crate) mod proxy;
pub(crate) mod rds;
pub(crate) mod resolve;
pub(crate) mod secret;
pub(crate) mod secrets;
pub(crate) mod signals;
pub mod target;
pub(crate) mod text;
pub(crate) mod tls;
pub mod token;
pub(crate) mod wire;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use cli::{Cli, Command};
use error::Result;

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs one parsed command line; returns the process exit code on success.
pub async fn run(cli: Cli) -> Result<u8> {
    let result = match command(&cli).await {
        // A session that broke because its tunnel ended says so.
        Err(e) if e.hint().is_none() && e.category() == error::Category::Network => {
            match net::tunnel::ended().await {
                Some(why) => Err(e.with_hint(why)),
                None => Err(e),
            }
        }
        other => other,
    };
    // The tunnels (`--via ssh://`) end with the command.
    net::tunnel::close_all().await;
    // A signal is ending the run (and broke the command's tunnel): its code.
    if let Some(code) = signals::stopped() {
        return Ok(code);
    }
    result
}

async fn command(cli: &Cli) -> Result<u8> {
    let global = &cli.global;
    aws::allow_unknown_regions(global.allow_unknown_region);
    match &cli.command {
        Command::Ca(args) => cmd::ca::run(global, args).await,
        Command::Completions(args) => cmd::completions::run(args),
        Command::Targets(args) => cmd::targets::run(global, args),
        Command::Policy(args) => cmd::policy::run(global, args).await,
        Command::User(args) => cmd::user::run(global, args).await,
        Command::Audit(args) => cmd::audit::run(global, args).await,
        Command::Man(args) => cmd::man::run(args),
        Command::Version => cmd::version::run(global),
        Command::Token(args) => cmd::token::run(global, args).await,
        Command::Check(args) => cmd::check::run(global, args).await,
        Command::Mysql(args) => cmd::connect::mysql(global, args).await,
        Command::Postgres(args) => cmd::connect::postgres(global, args).await,
        Command::Env(args) => cmd::child::env(global, args).await,
        Command::Exec(args) => cmd::child::exec(global, args).await,
        Command::Ls(args) => cmd::ls::run(global, args).await,
        // Boxed: the checklist with its connection check is a large future.
        Command::Doctor(args) => Box::pin(cmd::doctor::run(global, args)).await,
        Command::Proxy(args) => cmd::proxy::run(global, args).await,
    }
}

/// The runtime a command runs on. The proxy serves many connections and
/// logs many clients in at once (TLS handshakes, SCRAM): it gets one worker
/// thread per core (`--threads`). Every other command does one thing at a
/// time and starts faster on the current thread.
pub fn runtime(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    match &cli.command {
        Command::Proxy(args) => {
            let threads = args.threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                usize::from,
            );
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("rdsconn-proxy")
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
}

/// Sends diagnostics to stderr. Only rdsconn's own events go past `warn`,
/// whatever the verbosity: dependencies (HTTP, AWS SDK) log request details
/// at debug/trace that may carry credentials. `warnings`: show rdsconn's
/// warnings without -v (long-running commands).
/// Whether log lines are JSON objects (`proxy --log-format json`): the
/// proxy then logs its connections' fields one by one.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets up logging on stderr: `-v` levels; a server (`warnings`, the
/// proxy) logs its warnings without `-v` and stamps each line with the
/// time (RFC 3339, UTC); `json` writes one JSON object per line.
pub fn init_logging(verbose: u8, warnings: bool, json: bool) {
    let filter = match verbose {
        0 if warnings => "error,rdsconn=warn",
        0 => "error",
        1 => "warn,rdsconn=info",
        2 => "warn,rdsconn=debug",
        _ => "warn,rdsconn=trace",
    };
    // Colour only for a person at a terminal who has not asked for none.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let base = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false);
    if json {
        JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = base
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init();
    } else if warnings {
        let _ = base.with_ansi(colour).try_init();
    } else {
        let _ = base.with_ansi(colour).without_time().try_init();
    }
}

/// Prints an error on stderr: the text layout, or one JSON line with
/// `--output json`.
pub fn print_error(e: &error::Error, json: bool) {
    if json {
        e.print_json(std::io::stderr().lock());
    } else {
        e.print(std::io::stderr().lock());
    }
}

/// Reports a command-line parse error in one line (exit 2), or prints the
/// help / version text clap produced (exit 0).
pub fn report_parse_error(err: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
        }
        _ => {
            let line = one_line(&err.render().to_string());
            if json {
                let message = line.strip_prefix("error: ").unwrap_or(&line);
                print_error(&error::Error::usage(message), true);
            } else {
                eprintln!("{line}");
            }
            ExitCode::from(error::Category::Usage.exit_code())
        }
    }
}

/// Folds clap's multi-paragraph error into `error: … (see 'rdsconn X --help')`.
fn one_line(rendered: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage:") {
            usage = Some(u.trim().to_string());
        } else if !line.starts_with("For more information") {
            parts.push(line.to_string());
        }
    }
    let mut text = parts.join(" ").replacen("error: ", "", 1);
    text = text.replace(" tip: ", "; tip: ");
    let command: Vec<&str> = usage
        .as_deref()
        .unwrap_or("rdsconn")
        .split_whitespace()
        .take_while(|w| !w.starts_with(['[', '<', '-']))
        .collect();
    let command = if command.is_empty() {
        "rdsconn".to_string()
    } else {
        command.join(" ")
    };
    format!("error: {text} (see '{command} --help')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse_error(args: &[&str]) -> String {
        one_line(&Cli::try_parse_from(args).unwrap_err().render().to_string())
    }

    #[test]
    fn parse_errors_fold_into_one_line_naming_the_subcommand() {
        let msg = parse_error(&["rdsconn", "ca", "fetch", "--forse"]);
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.starts_with("error: unexpected argument '--forse' found"),
            "{msg}"
        );
        assert!(msg.contains("'--force'"), "tip kept: {msg}");
        assert!(msg.ends_with("(see 'rdsconn ca fetch --help')"), "{msg}");
    }

    #[test]
    fn bad_value_error_is_one_line() {
        let msg = parse_error(&["rdsconn", "ca", "fetch", "--timeout", "soon"]);
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("--timeout"), "{msg}");
    }
}
