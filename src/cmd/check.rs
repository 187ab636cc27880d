//! `rdsconn check`: a staged reachability probe for CI.
//!
//! Each target goes through DNS, TCP, TLS (rdsconn's own probe, so the
//! handshake is timed and the certificate inspected on its own), then
//! authentication and the query through the engine driver on a second
//! connection (the drivers do TLS and authentication in one step). The
//! first failing stage stops the target; its category gives the exit code.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::{CheckArgs, GlobalArgs, OutputFormat};
use crate::cli::{RdsSelector, SecretFlags};
use crate::error::{Category, Error, Result};
use crate::output;
use crate::output::Status;
use crate::probe::{Item, Login, Report, Settings, Step, check_with_retries};
use crate::resolve::{
    Ask, Given, Request, Users, env, request, roots, stdin_password, target_lines,
};
use crate::secret::Secret;
use crate::secrets::{FromSecret, SecretRef};
use crate::signals::StopSignals;
use crate::tls::TlsPolicy;

#[derive(Debug, Serialize)]
struct Summary {
    targets: usize,
    /// Passed, with or without warnings (`--strict` changes the exit
    /// code, never the counts).
    passed: usize,
    warnings: usize,
    failed: usize,
    interrupted: bool,
    /// How long the whole check took (retries under `--wait` included).
    total_ms: f64,
    #[serde(skip)]
    exit_code: u8,
}

#[derive(Serialize)]
struct Document<'a> {
    targets: &'a [Report],
    summary: &'a Summary,
    /// As in `doctor`'s document: the process's exit code.
    exit_code: u8,
}

pub(crate) async fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<u8> {
    // Installed first: a signal that comes at any point is seen.
    let mut stop = StopSignals::install()?;
    let items = items(global, args).await?;
    let settings = Arc::new(Settings {
        query: args.query.clone(),
        warn_days: i64::from(args.warn_cert_days),
        wait: args.wait.map(Into::into),
        wait_all: args.wait_all,
        progress: global.verbose > 0 || output::stderr_is_tty(),
    });

    // A target without a result when Ctrl-C comes stays `interrupted`.
    let mut reports: Vec<Report> = items.iter().map(Report::interrupted).collect();
    let permits = Arc::new(tokio::sync::Semaphore::new(usize::from(args.concurrency)));
    let progress: Vec<Arc<std::sync::Mutex<Option<Report>>>> =
        items.iter().map(|_| Arc::default()).collect();
    let mut set = JoinSet::new();
    let started = std::time::Instant::now();
    for (index, item) in items.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        let settings = Arc::clone(&settings);
        let progress = Arc::clone(&progress[index]);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, check_with_retries(&item, &settings, &progress).await)
        });
    }

    let mut interrupted = None;
    loop {
        tokio::select! {
            next = set.join_next() => match next {
                Some(Ok((index, report))) => {
                    tracing::info!(
                        "{}: {} after {} attempt(s)",
                        report.target,
                        report.status.label().to_lowercase(),
                        report.attempts
                    );
                    reports[index] = report;
                }
                Some(Err(e)) => return Err(Error::new(Category::Runtime, e).context("a check task failed")),
                None => break,
            },
            signal = stop.recv() => {
                interrupted = Some(signal.exit_code());
                set.abort_all();
                break;
            }
        }
    }
    if interrupted.is_some() {
        for (report, last) in reports.iter_mut().zip(&progress) {
            let last = last.lock().ok().and_then(|mut l| l.take());
            if let (Status::Interrupted, Some(last)) = (report.status, last) {
                *report = Report::interrupted_after(last);
            }
        }
    }
    let mut summary = summarize(&reports, interrupted, args.strict);
    summary.total_ms = started.elapsed().as_secs_f64() * 1000.0;
    print(global.output, &reports, &summary)?;
    Ok(summary.exit_code)
}

/// The targets from URLs, `--file`, the `--host` flags or `--instance` /
/// `--cluster`, and `@NAME`s, with their passwords; every problem is a
/// usage error before any connection.
async fn items(global: &GlobalArgs, args: &CheckArgs) -> Result<Vec<Item>> {
    let mut urls = args.urls.clone();
    if let Some(file) = &args.file {
        urls.extend(target_lines(file)?);
    }
    let no_rds = RdsSelector::default();
    // --master-secret belongs to the --instance / --cluster target.
    let url_secret = SecretFlags {
        master_secret: false,
        ..args.secret.clone()
    };
    let mut found = Vec::new();
    let url_targets = !urls.is_empty();
    for url in urls {
        // --secret fills what the URL leaves open (the user) and is its
        // password, as for `psql`/`mysql`.
        let ask = Ask {
            kind: None,
            ..ask(args, Given::url(url.clone()), &no_rds, &url_secret)
        };
        found.push((url, request(global, ask).await?, global.clone()));
    }
    // Each @NAME: its own flags with the typed ones over them.
    for named in &args.named {
        let a = &named.args;
        let asked = ask(a, Given::from(a), &a.rds, &a.secret);
        let request = request(&named.global, asked).await?;
        found.push((named.name.clone(), request, named.global.clone()));
    }
    // One target from --host (with --engine), from the RDS API, or a
    // whole target in an RDS-style secret; with @NAMEs those flags are
    // theirs.
    let plain = args.named.is_empty();
    let single = plain
        && (args.host.is_some()
            || args.rds.is_set()
            || (!url_targets && (args.secret.secret.is_some() || args.secret.master_secret)));
    if plain && !single && (args.user.is_some() || args.port.is_some() || args.database.is_some()) {
        return Err(Error::usage(
            "--user, --port and --database describe a --host, --instance or --cluster target",
        ));
    }
    if single {
        let asked = ask(args, Given::from(args), &args.rds, &args.secret);
        let request = request(global, asked).await?;
        found.push((label_of(&request)?, request, global.clone()));
    }
    if found.is_empty() {
        return Err(Error::usage(
            "no targets: pass URLs, @NAMEs, --file FILE, --engine/--host/--user, or --instance/--cluster with --user",
        ));
    }
    if args.via.is_some() && found.len() > 1 {
        return Err(Error::usage(
            "--via applies to a single target; this check has several",
        ));
    }
    // One password for every password target: stdin's, or the secret's
    // (read once: the --host / --instance target's, else now).
    let stdin_password = if args.password_stdin {
        Some(stdin_password()?)
    } else {
        None
    };
    let from_secret = shared_secret(global, args, &found).await?;
    found
        .into_iter()
        .map(|(label, request, global)| {
            item(
                label,
                request,
                global,
                from_secret.as_ref(),
                stdin_password.as_ref(),
            )
        })
        .collect()
}

/// What the target flags of `args` ask for (the engine, the login, TLS,
/// the dial path).
fn ask<'a>(
    args: &'a CheckArgs,
    given: Given,
    rds: &'a RdsSelector,
    secret: &'a SecretFlags,
) -> Ask<'a> {
    Ask {
        kind: args.engine,
        given,
        rds,
        iam: args.iam,
        via: args.via.as_deref(),
        connect_timeout: args.connect_timeout.into(),
        users: Users::One,
        env: false,
        secret,
        tls: args.tls,
    }
}

/// One checked target: its login (IAM, the secret's password, stdin's, or
/// the engine's variable) and its TLS roots.
fn item(
    label: String,
    request: Request,
    global: GlobalArgs,
    from_secret: Option<&FromSecret>,
    stdin_password: Option<&Secret>,
) -> Result<Item> {
    let Request {
        kind,
        target,
        iam,
        tls,
        secret,
        ..
    } = request;
    let kind = kind.ok_or_else(|| Error::usage("an engine is required: pass a URL or --engine"))?;
    let login = if iam {
        Login::Iam
    } else if let Some(s) = secret.or_else(|| from_secret.cloned()) {
        Login::Secret(s)
    } else {
        password_login(&label, kind, stdin_password)
    };
    let policy = TlsPolicy {
        mode: tls,
        roots: roots(&global, &target.host)?,
    };
    Ok(Item {
        label,
        kind,
        target,
        login,
        policy,
        global,
    })
}

/// The `--host` / `--instance` / secret target as a URL, for the report.
fn label_of(request: &Request) -> Result<String> {
    let target = &request.target;
    let database = target
        .database
        .as_deref()
        .map(|d| format!("/{d}"))
        .unwrap_or_default();
    Ok(format!(
        "{}://{}@{}:{}{database}",
        request.engine()?.name(),
        target.user,
        target.host,
        target.port,
    ))
}

/// A password target's login: stdin's password, else its engine's own
/// variable (targets with different passwords check in one run); without
/// one it fails alone.
fn password_login(label: &str, kind: crate::target::EngineKind, stdin: Option<&Secret>) -> Login {
    let var = kind.password_env();
    match stdin.cloned().or_else(|| env(var).map(Secret::new)) {
        Some(p) => Login::Password(p),
        None => Login::Missing(format!(
            "no password for {label}: pass --iam (or ?iam=true), --password-stdin, --secret ID, or set {var}"
        )),
    }
}

/// `--secret`, read once for every password target: the `--host` /
/// `--instance` target's read, else one now.
async fn shared_secret(
    global: &GlobalArgs,
    args: &CheckArgs,
    found: &[(String, Request, GlobalArgs)],
) -> Result<Option<FromSecret>> {
    if let Some(s) = found.iter().find_map(|(_, r, _)| r.secret.clone()) {
        return Ok(Some(s));
    }
    let Some(id) = &args.secret.secret else {
        return Ok(None);
    };
    let source = SecretRef::new(id, args.secret.secret_region.as_deref());
    let password = crate::secrets::fetch(global, &source).await?.password;
    Ok(Some(FromSecret { source, password }))
}

fn summarize(reports: &[Report], interrupted: Option<u8>, strict: bool) -> Summary {
    let count = |s| reports.iter().filter(|r| r.status == s).count();
    let (failed, warnings, passed) = (count(Status::Fail), count(Status::Warn), count(Status::Ok));
    let worst = reports
        .iter()
        .filter_map(|r| r.failure)
        .max_by_key(|c| c.severity())
        .map(Category::exit_code);
    let exit_code = if let Some(signal) = interrupted {
        signal
    } else if let Some(code) = worst {
        code
    } else if strict && warnings > 0 {
        Category::Tls.exit_code()
    } else {
        0
    };
    Summary {
        targets: reports.len(),
        passed: passed + warnings,
        warnings,
        failed,
        interrupted: interrupted.is_some(),
        total_ms: 0.0,
        exit_code,
    }
}

fn print(format: OutputFormat, reports: &[Report], summary: &Summary) -> Result<()> {
    if format == OutputFormat::Json {
        return output::json(&Document {
            targets: reports,
            summary,
            exit_code: summary.exit_code,
        });
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.status.label().to_string(),
                r.target.clone(),
                r.stage.map_or("-", Step::name).to_string(),
                format!("{:.1} ms", r.total_ms),
                match (&r.error, r.attempts) {
                    (Some(e), n) if n > 1 => format!("{e} (after {n} attempts)"),
                    (Some(e), _) => e.clone(),
                    (None, n) if n > 1 => format!("after {n} attempts"),
                    (None, _) => String::new(),
                },
            ]
        })
        .collect();
    let mut text = output::grid(&["STATUS", "TARGET", "STAGE", "TIME", "REASON"], &rows);
    let _ = write!(
        text,
        "{} target(s): {} passed, {} warning(s), {} failed in {}{}",
        summary.targets,
        summary.passed,
        summary.warnings,
        summary.failed,
        crate::text::seconds(std::time::Duration::from_secs_f64(
            summary.total_ms / 1000.0
        )),
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    output::line(&text)
}
