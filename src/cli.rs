//! The command line: clap derive types for every subcommand and global flag.
//!
//! Flag names follow the AWS CLI, libpq and the mysql client so that users
//! can carry their habits over. Parsing only; no I/O happens here.
//!
//! Doc comments here are the `--help` text users read, so they are written
//! as plain prose, not rustdoc markdown.
#![allow(clippy::doc_markdown, rustdoc::bare_urls)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 AWS (credentials, region, API), \
4 network, 5 TLS / CA bundle, 6 authentication rejected.";

/// Reach Amazon RDS / Aurora MySQL and PostgreSQL over verified TLS, with IAM
/// auth tokens and the RDS CA bundle handled for you.
#[derive(Debug, Parser)]
#[command(
    name = "rdsconn",
    version,
    propagate_version = true,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// AWS region. For `token` and connections: the signing region (default:
    /// parsed from the endpoint, else the AWS config). For `ca`: selects the
    /// regional CA bundle instead of the global one.
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// AWS shared-config profile to take credentials and region from.
    #[arg(long, global = true, value_name = "PROFILE")]
    pub profile: Option<String>,

    /// Output format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace). Secrets
    /// are never logged at any level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Use this PEM file as the CA bundle instead of the cached or embedded
    /// RDS bundle.
    #[arg(long, global = true, value_name = "FILE", env = "RDSCONN_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text (tables on a terminal).
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the RDS CA bundle: fetch, path, show.
    #[command(after_help = AFTER_HELP)]
    Ca(CaArgs),

    /// Print an IAM database auth token for an RDS endpoint.
    #[command(after_help = AFTER_HELP)]
    Token(PendingArgs),

    /// Connect to MySQL / MariaDB over verified TLS.
    #[command(after_help = AFTER_HELP)]
    Mysql(PendingArgs),

    /// Connect to PostgreSQL over verified TLS.
    #[command(visible_aliases = ["psql", "pg"], after_help = AFTER_HELP)]
    Postgres(PendingArgs),

    /// Staged reachability probe (DNS, TCP, TLS, auth, query) for CI.
    #[command(after_help = AFTER_HELP)]
    Check(PendingArgs),

    /// Print environment variables for a verified connection.
    #[command(after_help = AFTER_HELP)]
    Env(PendingArgs),

    /// Run a command with connection environment variables set.
    #[command(after_help = AFTER_HELP)]
    Exec(PendingArgs),

    /// List RDS instances and clusters with their endpoints.
    #[command(after_help = AFTER_HELP)]
    Ls(PendingArgs),

    /// Preflight checklist for IAM authentication to a target.
    #[command(after_help = AFTER_HELP)]
    Doctor(PendingArgs),

    /// Local listener that forwards to RDS over verified TLS with fresh tokens.
    #[command(after_help = AFTER_HELP)]
    Proxy(PendingArgs),

    /// Print a shell completion script.
    Completions(CompletionsArgs),

    /// Print the man page (roff), or write one page per subcommand.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub action: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Download the RDS CA bundle into the cache (conditional GET).
    ///
    /// Downloads the global bundle, or with --region that region's bundle
    /// (GovCloud and China regions use their own hosts). The download is
    /// validated (PEM, every certificate parses as X.509, size cap) before it
    /// atomically replaces the cached copy; on any failure the previous
    /// bundle stays. An unchanged bundle (ETag / Last-Modified) is not
    /// rewritten.
    ///
    /// Environment: RDSCONN_CA_BASE_URL replaces
    /// https://truststore.pki.rds.amazonaws.com (paths stay the same; plain
    /// http:// only for loopback), RDSCONN_CACHE_DIR replaces the cache
    /// directory ($XDG_CACHE_HOME/rdsconn or ~/.cache/rdsconn).
    #[command(after_help = AFTER_HELP)]
    Fetch(CaFetchArgs),

    /// Print the path of a PEM file for `mysql --ssl-ca=` / `sslrootcert=`.
    ///
    /// Without a cached download, the embedded bundle is written to the cache
    /// first (no network). With --region, a fetched regional bundle is used
    /// when present; otherwise the global bundle, which holds every region's
    /// roots.
    #[command(after_help = AFTER_HELP)]
    Path,

    /// List the certificates of the bundle in use, with expiry.
    ///
    /// Shows where the bundle came from (embedded, cache, or --ca-bundle),
    /// its sha256, and per certificate the subject, region, key type and
    /// expiry. Expired and soon-expiring (< 90 days) certificates are flagged.
    #[command(after_help = AFTER_HELP)]
    Show,
}

#[derive(Debug, Args)]
pub struct CaFetchArgs {
    /// Download even if the cached bundle is unchanged on the server.
    #[arg(long)]
    pub force: bool,

    /// Give up on the download after this long (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: humantime::Duration,
}

/// Arguments of a subcommand that this build does not implement yet.
#[derive(Debug, Args)]
pub struct PendingArgs {
    #[arg(
        hide = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write rdsconn.1 and one page per subcommand into this directory
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

impl Command {
    /// The subcommand's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ca(_) => "ca",
            Self::Token(_) => "token",
            Self::Mysql(_) => "mysql",
            Self::Postgres(_) => "postgres",
            Self::Check(_) => "check",
            Self::Env(_) => "env",
            Self::Exec(_) => "exec",
            Self::Ls(_) => "ls",
            Self::Doctor(_) => "doctor",
            Self::Proxy(_) => "proxy",
            Self::Completions(_) => "completions",
            Self::Man(_) => "man",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn region_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["rdsconn", "ca", "path", "--region", "eu-west-1"]).unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(
            cli.command,
            Command::Ca(CaArgs {
                action: CaCommand::Path
            })
        ));
    }
}
