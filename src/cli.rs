//! The command line: clap derive types for every subcommand and global flag.
//!
//! Flag names follow the AWS CLI, libpq and the mysql client so that users
//! can carry their habits over. Parsing only; no I/O happens here.
//!
//! Doc comments here are the `--help` text users read, so they are written
//! as plain prose, not rustdoc markdown.
#![allow(
    clippy::doc_markdown,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 AWS (credentials, region, API), \
4 network, 5 TLS / CA bundle, 6 authentication rejected.";

const CA_AFTER_HELP: &str = "\
Examples:
  # the bundle in use: source, sha256, certificates, expiry
  rdsconn ca show
  rdsconn ca fetch                        # refresh the cached bundle (conditional GET)
  psql \"sslrootcert=$(rdsconn ca path) sslmode=verify-full host=mydb… user=app\"

Exit codes: 0 ok, 1 runtime failure, 2 usage, 4 network, 5 TLS / CA bundle.";

const CA_FETCH_AFTER_HELP: &str = "\
Examples:
  rdsconn ca fetch
  rdsconn ca fetch --region eu-west-1     # that region's bundle
  rdsconn ca fetch --force --output json  # download even when unchanged

Exit codes: 0 ok (updated or unchanged), 2 usage, 4 network, 5 an invalid download (the cached bundle stays).";

const CA_PATH_AFTER_HELP: &str = "\
Examples:
  mysql --ssl-ca=\"$(rdsconn ca path)\" --ssl-mode=VERIFY_IDENTITY -h mydb… -u app
  rdsconn ca path --for app-proxy.proxy-abc123.eu-west-1.rds.amazonaws.com   # Amazon Trust roots

Exit codes: 0 ok, 1 runtime failure (cache directory), 2 usage, 5 invalid CA material.";

const CA_SHOW_AFTER_HELP: &str = "\
Examples:
  rdsconn ca show
  rdsconn ca show --for mydb.abc123.eu-west-1.rds.amazonaws.com
  rdsconn ca show --output json | jq '.certificates[] | select(.days_left < 365)'

Exit codes: 0 ok, 2 usage, 5 invalid CA material.";

const LS_AFTER_HELP: &str = "\
Examples:
  # on a terminal: identifier, kind, engine, status, IAM, endpoint
  rdsconn ls
  rdsconn ls -o wide                      # every column
  rdsconn ls --engine postgres --output json | jq -r '.databases[].endpoint'
  rdsconn --region eu-west-1 ls | cut -f1,7   # piped: tab-separated, header first

Exit codes: 0 ok (also when the region has none), 2 usage, 3 AWS (credentials, region, API).";

const COMPLETIONS_AFTER_HELP: &str = "\
Examples:
  rdsconn completions bash > ~/.local/share/bash-completion/completions/rdsconn
  rdsconn completions zsh > \"${fpath[1]}/_rdsconn\"
  rdsconn completions fish > ~/.config/fish/completions/rdsconn.fish";

const MAN_AFTER_HELP: &str = "\
Examples:
  rdsconn man | man -l -
  rdsconn man --out-dir ~/.local/share/man/man1   # one page per subcommand";

const MYSQL_AFTER_HELP: &str = "\
Examples:
  MYSQL_PWD=… rdsconn mysql -h mydb.abc123.eu-west-1.rds.amazonaws.com -u app -e 'SELECT NOW()'
  # ask for the password, then mysql
  rdsconn mysql -h mydb…rds.amazonaws.com -u app -p prod
  rdsconn mysql --instance prod-db -u app --iam -f report.sql
  rdsconn mysql --cluster orders --master-secret -e 'SHOW PROCESSLIST'
  # an RDS-style secret is the target
  rdsconn mysql --secret prod/app --via 127.0.0.1:13306
  # through an SSM-managed instance
  rdsconn mysql -h mydb… -u app --iam --via ssm://tag:Name=bastion

Exit codes: 0 ok, 1 the SQL failed, 2 usage, 3 AWS, 4 network, 5 TLS, 6 authentication rejected;
130 after Ctrl-C (the statement is cancelled on the server).";

const POSTGRES_AFTER_HELP: &str = "\
Examples:
  PGPASSWORD=… rdsconn psql -h mydb.abc123.eu-west-1.rds.amazonaws.com -U app -c 'SELECT now()'
  rdsconn psql -h mydb…rds.amazonaws.com -U app -W prod          # ask for the password, then psql
  rdsconn pg --proxy app-proxy -U app --iam -c 'SELECT 1'         # RDS Proxy: Amazon Trust roots
  rdsconn pg -h abc123.dsql.us-east-1.on.aws -U admin --iam       # Aurora DSQL
  # a private database
  rdsconn psql -h mydb… -U app --iam --via ssh://ec2-user@bastion.example.com
  printf '%s\\n' \"$PW\" | rdsconn pg -h mydb… -U app --password-stdin -f migration.sql

Exit codes: 0 ok, 1 the SQL failed, 2 usage, 3 AWS, 4 network, 5 TLS, 6 authentication rejected;
130 after Ctrl-C (the statement is cancelled on the server).";

const TOKEN_AFTER_HELP: &str = "\
Examples:
  TOKEN=$(rdsconn token -h mydb.abc123.eu-west-1.rds.amazonaws.com -P 5432 -u app)
  rdsconn token postgres://app@mydb.abc123.eu-west-1.rds.amazonaws.com
  rdsconn token --hostname 10.0.0.5 --port 3306 --username app --region eu-west-1
  rdsconn token --proxy app-proxy -u app
  rdsconn token -h abc123.dsql.us-east-1.on.aws -u admin --expires-in 1h   # Aurora DSQL

Exit codes: 0 ok, 2 usage (bad host, port, user, URL), 3 AWS (no region, no credentials).";

const CHECK_AFTER_HELP: &str = "\
Examples:
  rdsconn check postgres://app@mydb.abc123.eu-west-1.rds.amazonaws.com/prod --iam --wait 120s
  rdsconn check --file targets.txt --output json
  PGPASSWORD=… rdsconn check --engine postgres -h mydb… -u app --via 127.0.0.1:15432";

const ENV_AFTER_HELP: &str = "\
Examples:
  eval \"$(rdsconn env postgres postgres://app@mydb.abc123.eu-west-1.rds.amazonaws.com --iam)\"
  rdsconn env mysql -h mydb.abc123.eu-west-1.rds.amazonaws.com -u app --iam --format fish | source
  rdsconn env postgres -h mydb… -U app --format dotenv > .env

Exit codes: 0 ok, 2 usage, 3 AWS (token); the output is empty on failure.";

const EXEC_AFTER_HELP: &str = "\
Examples:
  rdsconn exec postgres -h mydb.abc123.eu-west-1.rds.amazonaws.com -U app --iam -- ./migrate up
  # an option file in the tool's dialect
  rdsconn exec mysql -h mydb… -u app -- mysqldump appdb
  rdsconn exec mysql -h mydb… -u app --iam -- node app.js     (mysql2 reads DATABASE_URL)

Exit codes: COMMAND's own status; 2 usage, 3 AWS before COMMAND starts.";

const PROXY_AFTER_HELP: &str = "\
Examples:
  rdsconn proxy postgres mydb.abc123.eu-west-1.rds.amazonaws.com --iam --listen 127.0.0.1:6432
    then: psql \"host=127.0.0.1 port=6432 user=app dbname=prod sslmode=disable\"
  rdsconn proxy mysql -h mydb… --iam --via 127.0.0.1:13306 --listen unix:$XDG_RUNTIME_DIR/my.sock
  RDSCONN_LOCAL_PASSWORD=… rdsconn proxy pg -h mydb… --iam --local-password \\
      --listen 0.0.0.0:6432 --allow-remote
  # a sidecar: health, metrics, JSON logs, /quitquitquit
  rdsconn proxy pg -h mydb… -u app --iam --health-check --prometheus --log-format json --quitquitquit
  rdsconn proxy --config targets.toml --health-check    # several targets in one process
  rdsconn proxy wait --max 60s && exec ./app              # until /startup answers 200
  # a pool: 20 server connections shared per transaction, one IAM login each
  rdsconn proxy pg -h mydb… --iam --pool-mode transaction --pool-size 20 --listen 127.0.0.1:6432
  rdsconn proxy mysql -h mydb… --iam --pool-mode session    # MySQL: reset per client

Exit codes: 143 / 130 after a shutdown by SIGTERM / SIGINT (0 with --exit-zero-on-sigterm); 2 usage
(bad flag, address in use), 3 AWS (credentials, region); with --run-connection-test, the test's.";

const DOCTOR_AFTER_HELP: &str = "\
Examples:
  rdsconn doctor --instance prod-db -u app --iam
  rdsconn doctor postgres://app@mydb.abc123.eu-west-1.rds.amazonaws.com/prod --iam";

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
#[derive(Clone, Debug, Args)]
pub struct GlobalArgs {
    /// AWS region. For `token` and connections: the signing region (default:
    /// parsed from the endpoint, else the AWS config). For `ca`: selects the
    /// regional CA bundle instead of the global one.
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// Accept a region this rdsconn does not know (newer than its table);
    /// without it an unknown region such as a typo is refused.
    #[arg(
        long,
        global = true,
        env = "RDSCONN_ALLOW_UNKNOWN_REGION",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_unknown_region: bool,

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

/// Whether the raw command line asks for `--output json` (for errors
/// found before or while clap parses it).
pub fn wants_json(args: &[std::ffi::OsString]) -> bool {
    // Not the words after `--`, which belong to `exec`'s command.
    let ours = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let args = &args[..ours];
    args.windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json")
        || args.iter().any(|a| a == "--output=json")
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
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Manage the RDS CA bundle: fetch, path, show.
    #[command(after_help = CA_AFTER_HELP)]
    Ca(CaArgs),

    /// Print an IAM database auth token for an RDS endpoint.
    ///
    /// Prints the token and a newline on stdout, nothing else (warnings go
    /// to stderr), byte-identical to `aws rds generate-db-auth-token`.
    ///
    /// The port is part of the signed string: a token for the wrong port is
    /// rejected by the server. So --port is required unless a target URL
    /// gives it, or the URL's scheme or --engine implies the default
    /// (mysql 3306, postgres 5432).
    ///
    /// Region: --region, else the one in the endpoint name
    /// (NAME.ID.REGION.rds.amazonaws.com, China *.rds.REGION.amazonaws.com.cn),
    /// else AWS_REGION / AWS_DEFAULT_REGION / the profile's region. A
    /// configured region that disagrees with the endpoint's gets a warning;
    /// the endpoint's wins. There is no default region.
    ///
    /// Credentials: --profile (that profile only), else the AWS default
    /// chain: environment, shared config/credentials files (AWS_PROFILE,
    /// SSO, credential_process, assume-role), web identity, container,
    /// EC2 instance metadata.
    #[command(after_help = TOKEN_AFTER_HELP, disable_help_flag = true)]
    Token(TokenArgs),

    /// Connect to MySQL / MariaDB over verified TLS.
    ///
    /// Connects to the endpoint (verified against the RDS CA bundle and,
    /// with --tls verify-full, the endpoint name: MySQL VERIFY_IDENTITY),
    /// authenticates with a password or an IAM token (sent with
    /// mysql_clear_password, only inside that TLS), and runs -e SQL or
    /// prints --info. Without those, it hands the verified session to the
    /// mysql or mariadb client (--client PATH; arguments after -- go to the
    /// client) with VERIFY_IDENTITY and the CA bundle, the password in a
    /// 0600 defaults file, and exits with the client's status. Through
    /// --via (or with IAM and MariaDB's client) the client talks to
    /// rdsconn's own proxy on a private unix socket, which keeps
    /// VERIFY_IDENTITY upstream: no --tls verify-ca needed.
    ///
    /// Environment: MYSQL_HOST and MYSQL_TCP_PORT fill in what the flags
    /// and URL leave open; MYSQL_PWD is the password (else
    /// --password-stdin, else a no-echo prompt on a terminal).
    #[command(visible_alias = "mariadb", after_help = MYSQL_AFTER_HELP, disable_help_flag = true)]
    Mysql(MysqlArgs),

    /// Connect to PostgreSQL over verified TLS.
    ///
    /// Connects to the endpoint (verified against the RDS CA bundle and,
    /// with --tls verify-full, the endpoint name), authenticates with a
    /// password or an IAM token, and runs -c/-e SQL or prints --info.
    /// Without those, it hands the verified session to psql (--client
    /// PATH; arguments after -- go to psql) with sslmode=verify-full, the
    /// CA bundle, hostaddr for --via, the password in its environment, and
    /// exits with psql's status.
    ///
    /// Environment: PGHOST, PGPORT, PGUSER, PGDATABASE fill in what the
    /// flags and URL leave open; PGPASSWORD is the password (else
    /// --password-stdin, else a no-echo prompt on a terminal).
    #[command(visible_aliases = ["psql", "pg"], after_help = POSTGRES_AFTER_HELP, disable_help_flag = true)]
    Postgres(PostgresArgs),

    /// Staged reachability probe (DNS, TCP, TLS, auth, query) for CI.
    ///
    /// Checks each target in stages — DNS (or --via), TCP connect, TLS
    /// handshake and certificate verification, authentication, a query — and
    /// reports the first stage that fails, with timings and the certificate's
    /// expiry. Targets are URLs (mysql://USER@HOST[:PORT][/DB],
    /// postgres://…, `?iam=true` for IAM), lines of --file, or one target
    /// given with --engine/--host/--user flags.
    ///
    /// Passwords (without --iam): PGPASSWORD for PostgreSQL targets,
    /// MYSQL_PWD for MySQL targets, or --password-stdin for all.
    ///
    /// Exit code: 0 when every target passes; otherwise the code of the
    /// worst failure, in this order: 4 network (DNS, TCP, timeout), 5 TLS,
    /// 6 authentication, 3 AWS (credentials, token), 1 query. A certificate
    /// expiring within --warn-cert-days is a warning (exit 0, or 5 with
    /// --strict). Interrupted by Ctrl-C: the partial report, exit 130.
    #[command(after_help = CHECK_AFTER_HELP, disable_help_flag = true)]
    Check(CheckArgs),

    /// Print a connection's settings as shell variables, for eval.
    ///
    /// Prints `export` lines (or fish `set -gx`, JSON, a .env file) for the
    /// engine's clients, tools and drivers. PostgreSQL: PGHOST, PGHOSTADDR
    /// (with --via), PGPORT, PGUSER, PGDATABASE, PGSSLMODE, PGSSLROOTCERT,
    /// PGPASSWORD, DATABASE_URL (libpq URI: asyncpg, node-pg, psycopg),
    /// JDBC_URL. MySQL: MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_USER,
    /// MYSQL_DATABASE, MYSQL_PWD, MYSQL_SSL_CA, MYSQL_SSL_MODE (and
    /// LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN=1 with --iam), DATABASE_URL (sqlx,
    /// mysql2), SQLALCHEMY_URL (PyMySQL), JDBC_URL (MariaDB Connector/J).
    /// Through --via only the native clients' variables: no URL could
    /// verify the endpoint there. An IAM token is valid for 15 minutes for
    /// new connections.
    ///
    /// The output holds the password or token: eval it, do not log it.
    #[command(after_help = ENV_AFTER_HELP, disable_help_flag = true)]
    Env(EnvArgs),

    /// Run a command with a connection's settings in its environment.
    ///
    /// Sets the variables `rdsconn env` prints (DATABASE_URL included) in
    /// COMMAND's environment only, forwards signals to it and exits with
    /// its exit status (128+N when signal N ended it). A MySQL or MariaDB
    /// tool (mysql, mysqldump, mariadb-dump…) also gets an option file with
    /// the connection in its own dialect.
    #[command(after_help = EXEC_AFTER_HELP, disable_help_flag = true)]
    Exec(ExecArgs),

    /// List the region's RDS instances, clusters and proxies with their endpoints.
    ///
    /// For each DB instance, cluster, RDS Proxy and proxy endpoint (all
    /// pages of DescribeDBInstances, DescribeDBClusters, DescribeDBProxies
    /// and DescribeDBProxyEndpoints): identifier, kind, engine and version,
    /// status, IAM database authentication, TLS required (proxies),
    /// endpoint:port, the cluster's reader endpoint, the CA certificate
    /// identifier, the managed master secret and the resource id (for
    /// `rds-db:connect` policies). Region: --region, else the AWS
    /// configuration. AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_RDS select another
    /// RDS API endpoint (a VPC endpoint).
    #[command(after_help = LS_AFTER_HELP)]
    Ls(LsArgs),

    /// Preflight checklist for a target, IAM authentication above all.
    ///
    /// Each line is OK, WARN or FAIL with a fix: AWS credentials (key,
    /// expiry), the caller's identity (STS GetCallerIdentity), the region
    /// of the endpoint vs the configuration, local clock skew (from the
    /// Date of that AWS response; SigV4 tokens fail beyond 5 minutes), the
    /// instance or cluster behind the endpoint and whether IAM database
    /// authentication is enabled, the exact `rds-db:connect` resource ARN
    /// for this user, the instance's CA in the bundle in use, then the
    /// staged connection check (DNS, TCP, TLS, auth, query) as `rdsconn
    /// check` does it. Exit code: the worst failure (as `check`).
    #[command(after_help = DOCTOR_AFTER_HELP, disable_help_flag = true)]
    Doctor(DoctorArgs),

    /// Local listener that forwards to RDS over verified TLS with fresh tokens.
    ///
    /// For clients that cannot do IAM auth or verify RDS certificates (GUI
    /// tools, old drivers, ORMs): they connect to a loopback port or a unix
    /// socket without TLS and without the token; each connection gets its
    /// own upstream connection over TLS verified for the endpoint name
    /// (also through --via), logged in as the user the client names with a
    /// token minted for that user (reused for new connections for at most
    /// 10 minutes) or the configured password. Then the session is relayed
    /// byte for byte.
    ///
    /// Listens on 127.0.0.1 and a free port unless --listen says otherwise;
    /// the addresses are printed on stdout at start-up. SIGINT / SIGTERM
    /// (or POST /quitquitquit with --quitquitquit) turn readiness off,
    /// accept for --min-sigterm-delay, stop accepting, let open connections
    /// finish for --max-sigterm-delay, then close them; exit 143 / 130 (0
    /// with --exit-zero-on-sigterm). As a sidecar: --health-check,
    /// --prometheus, --log-format json, RDSCONN_PROXY_... variables,
    /// --config for several targets; `rdsconn proxy wait` and `rdsconn
    /// proxy shutdown` talk to a running proxy. --pool-mode session or
    /// transaction keeps server connections and lends them to clients
    /// (/pools shows them). -v logs one line per
    /// connection (client, user, database, upstream timings, bytes, how it
    /// ended); failures are logged without -v.
    #[command(
        after_help = PROXY_AFTER_HELP,
        disable_help_flag = true,
        subcommand_negates_reqs = true,
        args_conflicts_with_subcommands = true
    )]
    Proxy(ProxyArgs),

    /// Print the IAM policy that lets a principal connect as database users.
    ///
    /// `rds-db:connect` on arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:ID/USER
    /// with the right ID: the instance's DbiResourceId, the Aurora
    /// cluster's DbClusterResourceId, the RDS Proxy's prx-… (looked up
    /// through the RDS API, the partition, region and account from the
    /// database's own ARN), or given with --resource-id and --account.
    /// Aurora DSQL endpoints get dsql:DbConnect (dsql:DbConnectAdmin for
    /// the user admin) on arn:PARTITION:dsql:REGION:ACCOUNT:cluster/ID.
    #[command(after_help = POLICY_AFTER_HELP, disable_help_flag = true)]
    Policy(PolicyArgs),

    /// Audit a region's databases: TLS enforced, IAM, public access, CA.
    ///
    /// Reads the RDS API (every page; parameter groups at most
    /// --concurrency at a time) and reports each finding with its severity,
    /// evidence and the command that fixes it: TLS not enforced (the
    /// effective rds.force_ssl / require_secure_transport: the parameter
    /// group's value, else the engine default as the API says it
    /// (DescribeEngineDefaultParameters), else as rdsconn knows it (on from
    /// RDS PostgreSQL 15);
    /// Aurora's cluster parameter group), an RDS Proxy without RequireTLS,
    /// IAM database authentication off, publicly accessible, a master
    /// password RDS does not manage or a managed secret that does not
    /// rotate, the CA expired, expiring or retired, a pending
    /// ca-certificate-rotation, and whether rotating it restarts the
    /// database (DescribeDBEngineVersions).
    ///
    /// Exit code: 0, or 1 with --fail-on SEVERITY when a finding at or above
    /// it exists (for CI gating); 3 when the RDS API cannot be read.
    #[command(after_help = AUDIT_AFTER_HELP, disable_help_flag = true)]
    Audit(AuditArgs),

    /// Create database users that log in with IAM or Kerberos.
    #[command(after_help = USER_AFTER_HELP)]
    User(UserArgs),

    /// List the named targets (@NAME), or show one resolved.
    ///
    /// A named target is a [targets.NAME] table of rdsconn's config file
    /// ($RDSCONN_CONFIG, else $XDG_CONFIG_HOME/rdsconn/config.toml, else
    /// ~/.config/rdsconn/config.toml) or of the first .rdsconn.toml from
    /// the current directory upward (its tables replace the user's), else
    /// a libpq service (PGSERVICEFILE or ~/.pg_service.conf, then
    /// PGSYSCONFDIR/pg_service.conf). Its keys are the long names of the
    /// target flags (engine, host, instance, cluster, reader, proxy,
    /// secret, master-secret, user, database, port, iam, via, tls, region,
    /// profile, connect-timeout, and the proxy's); [defaults] is under
    /// every table; `extends = "BASE"` takes BASE's keys first. `@NAME`
    /// works wherever a target is taken; flags typed on the command line
    /// win, and -v logs where each value came from.
    #[command(after_help = TARGETS_AFTER_HELP)]
    Targets(TargetsArgs),

    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions(CompletionsArgs),

    /// Print the man page (roff), or write one page per subcommand.
    #[command(after_help = MAN_AFTER_HELP)]
    Man(ManArgs),

    /// Print the version; with --verbose (or --output json) also the
    /// commit, build date, target, compiler and TLS stack, for a bug report.
    #[command(after_help = VERSION_AFTER_HELP)]
    Version,
}

const POLICY_AFTER_HELP: &str = "\
Examples:
  rdsconn policy --instance prod-db -u app
  rdsconn policy --cluster orders -u app -u report --principal app-role
  rdsconn policy -h mydb.abc123.eu-west-1.rds.amazonaws.com -u app --output json
  rdsconn policy --resource-id db-ABCDEFGHIJKL01234 --account 123456789012 --region eu-west-1 -u app
  rdsconn policy -h abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws -u admin --account 123456789012";

/// `rdsconn policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// A database user the principal may connect as (repeatable; * for
    /// every user).
    #[arg(
        short = 'u',
        visible_short_alias = 'U',
        long,
        visible_alias = "username",
        value_name = "USER",
        required = true
    )]
    pub user: Vec<String>,

    /// An endpoint (repeatable): an instance's, cluster's or proxy's,
    /// looked up through the RDS API, or an Aurora DSQL endpoint.
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Vec<String>,

    /// A DB instance (repeatable).
    #[arg(long, value_name = "ID")]
    pub instance: Vec<String>,

    /// An Aurora DB cluster (repeatable).
    #[arg(long, value_name = "ID")]
    pub cluster: Vec<String>,

    /// An RDS Proxy (repeatable).
    #[arg(long, value_name = "NAME")]
    pub proxy: Vec<String>,

    /// Without the RDS API: a DbiResourceId (db-…), DbClusterResourceId
    /// (cluster-…) or proxy id (prx-…), repeatable; with --account and
    /// --region.
    #[arg(long, value_name = "ID")]
    pub resource_id: Vec<String>,

    /// The account (12 digits) of --resource-id and DSQL endpoints
    /// [default: the caller's, from STS].
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// The engine (from a named target; the policy does not depend on it).
    #[arg(long, value_enum, hide = true)]
    pub engine: Option<crate::target::EngineKind>,

    /// Also print the `aws iam put-role-policy` command that attaches the
    /// policy to this IAM role.
    #[arg(long, value_name = "ROLE")]
    pub principal: Option<String>,

    /// The inline policy's name in that command.
    #[arg(long, value_name = "NAME", default_value = "rdsconn-connect")]
    pub policy_name: String,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

const AUDIT_AFTER_HELP: &str = "\
Examples:
  rdsconn audit --region eu-west-1
  rdsconn audit --instance prod-db --cluster orders
  rdsconn audit --fail-on high --output json > audit.json     (CI: exit 1 on high or critical)
  rdsconn audit --connect --master-secret                     (also ask each database: sessions without TLS, …)
  rdsconn audit --connect --master-secret --via ssh://bastion (private databases, through a bastion)
  rdsconn audit --connect -h mydb.abc123.eu-west-1.rds.amazonaws.com --engine postgres -u admin";

/// A finding's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Inventory, not a problem (`--fail-on info` fails on any finding).
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// `rdsconn audit`.
#[derive(Clone, Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
pub struct AuditArgs {
    /// Only this DB instance (repeatable) [default: every database in the
    /// region].
    #[arg(long, value_name = "ID")]
    pub instance: Vec<String>,

    /// Only this DB cluster (repeatable).
    #[arg(long, value_name = "ID")]
    pub cluster: Vec<String>,

    /// Only this RDS Proxy (repeatable).
    #[arg(long, value_name = "NAME")]
    pub proxy: Vec<String>,

    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,

    /// API calls in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Also connect (verified TLS) and ask each database: sessions
    /// connected without TLS right now, users allowed without TLS, TLS off
    /// on the server, its IAM users. With -h, only that endpoint is
    /// audited; otherwise --concurrency databases at a time.
    #[arg(long)]
    pub connect: bool,

    /// With --connect: audit this endpoint only (no RDS API).
    #[arg(short = 'h', long, value_name = "HOST", requires_all = ["connect", "engine"])]
    pub host: Option<String>,

    /// With -h: the endpoint's port [default: the engine's].
    #[arg(short = 'P', visible_short_alias = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// With -h: its engine.
    #[arg(long, value_enum)]
    pub engine: Option<crate::target::EngineKind>,

    /// With --connect: the user to log in as (it needs to read
    /// pg_stat_activity / pg_stat_ssl, or mysql.user and performance_schema).
    #[arg(
        short = 'u',
        visible_short_alias = 'U',
        long,
        visible_alias = "username",
        value_name = "USER"
    )]
    pub user: Option<String>,

    /// With --connect: the database to connect to.
    #[arg(
        short = 'd',
        visible_short_alias = 'D',
        long,
        visible_alias = "dbname",
        value_name = "DB"
    )]
    pub database: Option<String>,

    /// With --connect: log in with IAM auth tokens.
    #[arg(long, requires = "connect")]
    pub iam: bool,

    /// With --connect: each database's RDS-managed master user secret.
    #[arg(long, requires = "connect", conflicts_with = "iam")]
    pub master_secret: bool,

    /// With --connect: the password from this Secrets Manager secret.
    #[arg(long, value_name = "ID", requires = "connect", conflicts_with_all = ["iam", "master_secret"])]
    pub secret: Option<String>,

    /// With --connect: the password from stdin's first line.
    #[arg(long, requires = "connect")]
    pub password_stdin: bool,

    /// With --connect: the dial path: ssh://, ssm:// or socks5h:// reach
    /// every database behind it (TLS still verified end to end); HOST:PORT
    /// dials one address, so it needs -h or one --instance / --cluster.
    #[arg(long, value_name = "VIA", requires = "connect")]
    pub via: Option<String>,

    /// With --connect: bound on each connection's DNS + TCP + TLS + login.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub connect_timeout: humantime::Duration,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

const USER_AFTER_HELP: &str = "\
Examples:
  rdsconn user create app_iam --iam --instance prod-db --master-secret
  rdsconn user create app_iam --iam -h mydb.abc123.eu-west-1.rds.amazonaws.com -u admin --grant 'SELECT ON appdb.*'
  rdsconn user create jane --kerberos --realm CORP.EXAMPLE.COM --cluster orders --master-secret
  rdsconn user create app_iam --iam --engine mysql --dry-run      (the SQL only)";

/// `rdsconn user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a database user for IAM (--iam) or Kerberos (--kerberos)
    /// logins, as AWS documents it.
    ///
    /// MySQL: CREATE USER 'NAME'@'%' IDENTIFIED WITH AWSAuthenticationPlugin
    /// AS 'RDS' (Kerberos: IDENTIFIED WITH 'auth_pam'; MariaDB: IDENTIFIED
    /// VIA AWSAuthenticationPlugin USING 'RDS' / VIA pam), then ALTER USER
    /// … REQUIRE SSL. PostgreSQL: CREATE USER \"NAME\" and GRANT rds_iam
    /// (Kerberos: CREATE USER \"NAME@REALM\" WITH LOGIN and GRANT rds_ad), in
    /// one transaction; a role that is in the other group (directly or
    /// through roles) is refused. Only what is missing runs: running it
    /// twice changes nothing, and says so. The admin logs in with a
    /// password (--master-secret, --secret, --password-stdin, PGPASSWORD /
    /// MYSQL_PWD, ~/.pgpass) over verified TLS.
    #[command(after_help = USER_AFTER_HELP, disable_help_flag = true)]
    Create(UserCreateArgs),
}

/// `rdsconn user create`.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
#[command(group = clap::ArgGroup::new("method").required(true).args(["iam", "kerberos"]))]
pub struct UserCreateArgs {
    /// The new user's name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Target URL instead of the flags: ENGINE://ADMIN@HOST[:PORT][/DB].
    #[arg(value_name = "URL", conflicts_with = "host")]
    pub url: Option<String>,

    /// A user that logs in with IAM auth tokens.
    #[arg(long)]
    pub iam: bool,

    /// A user that logs in with Kerberos (AWS Directory Service).
    #[arg(long)]
    pub kerberos: bool,

    /// PostgreSQL Kerberos users: the realm (the user is NAME@REALM).
    #[arg(long, value_name = "REALM", requires = "kerberos")]
    pub realm: Option<String>,

    /// Also grant PRIVILEGES ON OBJECT (repeatable): 'SELECT ON appdb.*'
    /// (MySQL), 'SELECT ON ALL TABLES IN SCHEMA public' (PostgreSQL).
    #[arg(long, value_name = "PRIVILEGES ON OBJECT")]
    pub grant: Vec<String>,

    /// Print the SQL; connect to nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The server is MariaDB (its syntax; found by itself when connected).
    #[arg(long)]
    pub mariadb: bool,

    /// With --iam and --instance/--cluster: turn IAM database
    /// authentication on there if it is off (ModifyDBInstance/Cluster,
    /// applied immediately), after a confirmation on the terminal.
    #[arg(long, requires_all = ["iam"], conflicts_with = "dry_run")]
    pub enable_iam: bool,

    /// Confirm --enable-iam without asking (scripts).
    #[arg(long, requires = "enable_iam")]
    pub yes: bool,

    /// Engine of the --host target (with --instance/--cluster: from the API).
    #[arg(long, value_enum)]
    pub engine: Option<crate::target::EngineKind>,

    /// Endpoint host name (signed for and verified against).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Endpoint port [default: the engine's].
    #[arg(short = 'P', visible_short_alias = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// The admin user to connect as [default: the master user with
    /// --master-secret].
    #[arg(
        short = 'u',
        visible_short_alias = 'U',
        long,
        visible_alias = "username",
        value_name = "USER"
    )]
    pub user: Option<String>,

    /// The database to connect to.
    #[arg(
        short = 'd',
        visible_short_alias = 'D',
        long,
        visible_alias = "dbname",
        value_name = "DB"
    )]
    pub database: Option<String>,

    #[command(flatten)]
    pub rds: RdsSelector,

    /// Read the admin's password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,

    /// The admin's password from this AWS Secrets Manager secret.
    #[arg(long, value_name = "ID", conflicts_with_all = ["password_stdin", "master_secret"])]
    pub secret: Option<String>,

    /// The region of --secret when it is a name.
    #[arg(long, value_name = "REGION", requires = "secret")]
    pub secret_region: Option<String>,

    /// The RDS-managed master user secret of --instance / --cluster.
    #[arg(long, conflicts_with = "password_stdin")]
    pub master_secret: bool,

    /// verify-full: chain and endpoint name; verify-ca: chain only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::tls::TlsMode::VerifyFull)]
    pub tls: crate::tls::TlsMode,

    /// The dial path (HOST:PORT, ssh://, ssm://, socks5h://), while
    /// verifying for the endpoint name.
    #[arg(long, value_name = "VIA")]
    pub via: Option<String>,

    /// Bound on DNS + TCP + TLS + authentication.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub connect_timeout: humantime::Duration,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

const TARGETS_AFTER_HELP: &str = "\
Examples:
  rdsconn targets                    every name and where it is defined
  rdsconn targets show prod          the resolved target: each key and its file and line
  rdsconn psql @prod                 connect to it (also mysql, check @a @b, env, exec, token, doctor, proxy, policy, audit, user create)
  rdsconn psql @prod -U admin        a flag on the command line wins over the file

A config file:
  [defaults]
  region = \"eu-west-1\"

  [targets.prod]
  engine = \"postgres\"
  cluster = \"orders\"
  user = \"app\"
  iam = true
  via = \"ssh://bastion.corp\"

  [targets.prod-ro]
  extends = \"prod\"
  reader = true

No passwords in the file (exit 2): use secret = \"ID\", ~/.pgpass, or the environment.";

/// `rdsconn targets`.
#[derive(Debug, Args)]
pub struct TargetsArgs {
    #[command(subcommand)]
    pub action: Option<TargetsAction>,
}

#[derive(Debug, Subcommand)]
pub enum TargetsAction {
    /// List every name and where it is defined (the default).
    List,
    /// The resolved target NAME: each key, its value and where it came
    /// from (a secret's name is shown; no file holds a password).
    Show {
        /// The target's name (with or without @).
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// The names only, one per line (for shell completion).
    #[command(hide = true)]
    Names,
}

const VERSION_AFTER_HELP: &str = "\
Examples:
  rdsconn version
  rdsconn version --verbose          (the same as rdsconn --version --verbose)
  rdsconn version --output json";

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
    #[command(after_help = CA_FETCH_AFTER_HELP)]
    Fetch(CaFetchArgs),

    /// Print the path of a PEM file for `mysql --ssl-ca=` / `sslrootcert=`.
    ///
    /// Without a cached download, the embedded bundle is written to the cache
    /// first (no network). With --region, a fetched regional bundle is used
    /// when present; otherwise the global bundle, which holds every region's
    /// roots.
    ///
    /// With --for HOST: the file with the roots that host's certificate must
    /// chain to (RDS Proxy and Aurora DSQL names: the Amazon Trust Services
    /// roots).
    #[command(after_help = CA_PATH_AFTER_HELP)]
    Path(CaForArgs),

    /// List the certificates of the bundle in use, with expiry.
    ///
    /// Shows where the bundle came from (embedded, cache, or --ca-bundle),
    /// its sha256, and per certificate the subject, region, key type and
    /// expiry. Expired and soon-expiring (< 90 days) certificates are flagged.
    ///
    /// With --for HOST: which roots that host gets and why (its endpoint
    /// class: RDS DB instance/cluster names the RDS bundle, RDS Proxy and
    /// Aurora DSQL names the Amazon Trust Services roots; --ca-bundle
    /// replaces either), then those roots.
    #[command(after_help = CA_SHOW_AFTER_HELP)]
    Show(CaForArgs),
}

/// `ca path` and `ca show`.
#[derive(Debug, Default, Args)]
pub struct CaForArgs {
    /// The endpoint host name whose roots to use, e.g.
    /// myproxy.proxy-abc123.us-east-1.rds.amazonaws.com.
    #[arg(long = "for", value_name = "HOST")]
    pub for_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct CaFetchArgs {
    /// Download even if the cached bundle is unchanged on the server.
    #[arg(long)]
    pub force: bool,

    /// Give up on the download after this long (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "30s")]
    pub timeout: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Target URL instead of the flags: postgres://USER@HOST[:PORT] or
    /// mysql://USER@HOST[:PORT] (no password).
    #[arg(value_name = "URL", conflicts_with = "host")]
    pub url: Option<String>,

    /// Endpoint host name the token is for (as in the server certificate).
    #[arg(short = 'h', long, visible_alias = "hostname", value_name = "HOST")]
    pub host: Option<String>,

    /// Endpoint port (part of the signed token).
    #[arg(short = 'P', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database user name (the IAM-enabled database user).
    #[arg(short = 'u', long, visible_alias = "username", value_name = "USER")]
    pub user: Option<String>,

    /// Engine whose default port to use when --port is not given.
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<crate::target::EngineKind>,

    #[command(flatten)]
    pub rds: RdsSelector,

    /// An Aurora DSQL token (`DbConnect`; `DbConnectAdmin` for the user
    /// admin) even though the host is not an `ID.dsql.REGION.on.aws` name
    /// (those get one anyway).
    #[arg(long)]
    pub dsql: bool,

    /// An Aurora DSQL token for `DbConnectAdmin` (the admin role's action;
    /// the user `admin` gets it anyway).
    #[arg(long)]
    pub admin: bool,

    /// Take the host, port, engine and user the flags leave open from this
    /// AWS Secrets Manager secret (an RDS-style secret; its password is not
    /// used).
    #[arg(long, value_name = "ID")]
    pub secret: Option<String>,

    /// The region of --secret when it is a name.
    #[arg(long, value_name = "REGION", requires = "secret")]
    pub secret_region: Option<String>,

    /// Aurora DSQL tokens only: how long the token is accepted (at most
    /// 604800s, one week) [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = dsql_lifetime)]
    pub expires_in: Option<humantime::Duration>,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// `rdsconn mysql`: the mysql client's short flags.
#[derive(Debug, Args)]
pub struct MysqlArgs {
    /// Target URL instead of the flags: mysql://USER@HOST[:PORT][/DB] (no
    /// password); or, as with mysql, the database name.
    #[arg(value_name = "URL|DB")]
    pub url: Option<String>,

    /// Ask for the password on the terminal (as mysql's -p without a value).
    /// A password in argv (-pSECRET, --password=SECRET) is refused: other
    /// users can read it in the process list.
    #[arg(short = 'p', long = "password", conflicts_with = "password_stdin")]
    pub password: bool,

    /// The MySQL option file whose [client] password to use (as mysql's
    /// --defaults-file) [default: ~/.my.cnf]; only if it is private (0600).
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,

    /// Endpoint host name (signed for and verified against).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Endpoint port [default: 3306].
    #[arg(short = 'P', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database user.
    #[arg(short = 'u', long, visible_alias = "username", value_name = "USER")]
    pub user: Option<String>,

    /// Default database.
    #[arg(short = 'D', long, visible_alias = "dbname", value_name = "DB")]
    pub database: Option<String>,

    #[command(flatten)]
    pub rds: RdsSelector,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `rdsconn postgres`: psql's short flags.
#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// Target URL instead of the flags: postgres://USER@HOST[:PORT][/DB] (no
    /// password); or, as with psql, the database name.
    #[arg(value_name = "URL|DB")]
    pub url: Option<String>,

    /// Ask for the password on the terminal, as psql -W does.
    #[arg(short = 'W', long = "password", conflicts_with_all = ["password_stdin", "no_password"])]
    pub password: bool,

    /// Never ask for a password (psql -w): without one from stdin or
    /// PGPASSWORD, fail instead of prompting.
    #[arg(short = 'w', long = "no-password")]
    pub no_password: bool,

    /// Endpoint host name (signed for and verified against).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Endpoint port [default: 5432].
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database user.
    #[arg(short = 'U', long, visible_alias = "username", value_name = "USER")]
    pub user: Option<String>,

    /// Database name.
    #[arg(short = 'd', long, visible_alias = "dbname", value_name = "DB")]
    pub database: Option<String>,

    #[command(flatten)]
    pub rds: RdsSelector,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A `check @NAME` target: the name, and its command line parsed.
#[derive(Debug)]
pub struct NamedCheck {
    pub name: String,
    pub global: GlobalArgs,
    pub args: CheckArgs,
}

/// `rdsconn check`.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
pub struct CheckArgs {
    /// Target URLs: mysql://USER@HOST[:PORT][/DB], postgres://… (`?iam=true` for IAM).
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,

    /// Read target URLs from FILE ('-' for stdin), one per line; blank
    /// lines and '#' comments are ignored.
    #[arg(long, value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,

    /// Engine of the target given with --host (with --instance/--cluster:
    /// the engine it must have).
    #[arg(long, value_enum)]
    pub engine: Option<crate::target::EngineKind>,

    /// Endpoint host name of a single target (with --engine and --user).
    #[arg(short = 'h', long, value_name = "HOST", requires = "engine")]
    pub host: Option<String>,

    /// Endpoint port of the --host target [default: the engine's].
    #[arg(short = 'P', visible_short_alias = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database user of the --host / --instance / --cluster target.
    #[arg(
        short = 'u',
        visible_short_alias = 'U',
        long,
        visible_alias = "username",
        value_name = "USER"
    )]
    pub user: Option<String>,

    /// Database of the --host / --instance / --cluster target.
    #[arg(
        short = 'd',
        visible_short_alias = 'D',
        long,
        visible_alias = "dbname",
        value_name = "DB"
    )]
    pub database: Option<String>,

    #[command(flatten)]
    pub rds: RdsSelector,

    /// Authenticate every target with an IAM auth token.
    #[arg(long, conflicts_with = "password_stdin")]
    pub iam: bool,

    /// Read one password for all password targets from stdin's first line.
    #[arg(long)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub secret: SecretFlags,

    /// verify-full: chain and endpoint name; verify-ca: chain only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::tls::TlsMode::VerifyFull)]
    pub tls: crate::tls::TlsMode,

    /// The dial path, while signing and verifying for the endpoint name:
    /// HOST:PORT (a forward of your own), ssh://[USER@]BASTION[:PORT]
    /// (the system ssh, your ~/.ssh/config), ssm://INSTANCE-ID or
    /// ssm://tag:Name=VALUE (session-manager-plugin), socks5h://HOST:PORT
    /// (ALL_PROXY too, unless NO_PROXY exempts the endpoint). A single target only.
    #[arg(long, value_name = "VIA")]
    pub via: Option<String>,

    /// Bound on each attempt's DNS + TCP + TLS + authentication.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub connect_timeout: humantime::Duration,

    /// The query stage's SQL.
    #[arg(long, value_name = "SQL", default_value = "SELECT 1")]
    pub query: String,

    /// The `@NAME` targets, each parsed from its own flags and the typed
    /// ones (filled in by `named::attach`).
    #[arg(skip)]
    pub named: Vec<NamedCheck>,

    /// Retry failing targets until they pass or DURATION has passed
    /// (capped exponential backoff with jitter). Only transient failures
    /// (DNS, refused, reset, timeout) are retried.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub wait: Option<humantime::Duration>,

    /// With --wait: retry every failure, TLS and authentication too.
    #[arg(long, requires = "wait")]
    pub wait_all: bool,

    /// How many targets are checked at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Warn when a passing target's certificate expires within N days.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub warn_cert_days: u32,

    /// Treat warnings (certificate expiring soon) as failures (exit 5).
    #[arg(long)]
    pub strict: bool,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Flags shared by the engine commands.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Authenticate with an IAM auth token minted for the endpoint.
    #[arg(long, conflicts_with = "password_stdin")]
    pub iam: bool,

    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub secret: SecretFlags,

    /// verify-full: chain and endpoint name; verify-ca: chain only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::tls::TlsMode::VerifyFull)]
    pub tls: crate::tls::TlsMode,

    /// The dial path, while signing and verifying for the endpoint name:
    /// HOST:PORT (a forward of your own), ssh://[USER@]BASTION[:PORT]
    /// (the system ssh, your ~/.ssh/config), ssm://INSTANCE-ID or
    /// ssm://tag:Name=VALUE (session-manager-plugin), socks5h://HOST:PORT
    /// (ALL_PROXY too, unless NO_PROXY exempts the endpoint).
    #[arg(long, value_name = "VIA")]
    pub via: Option<String>,

    /// Bound on DNS + TCP + TLS + authentication.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub connect_timeout: humantime::Duration,

    /// Run these statements (';'-separated) and print the rows.
    #[arg(
        short = 'e',
        long = "execute",
        visible_short_alias = 'c',
        visible_alias = "command",
        value_name = "SQL"
    )]
    pub execute: Option<String>,

    /// Run the statements in FILE ('-' for stdin, e.g. after the password
    /// line of --password-stdin) and print the rows.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["execute", "info"])]
    pub file: Option<PathBuf>,

    /// Print what was verified: server, TLS, certificate, auth, timings.
    #[arg(long)]
    pub info: bool,

    /// The native client to hand the session to [default: postgres: psql;
    /// mysql: mysql, else mariadb, from PATH].
    #[arg(long, value_name = "PATH", conflicts_with_all = ["execute", "info", "file"])]
    pub client: Option<PathBuf>,

    /// Arguments for the native client, after `--` (psql: `-- -c '\dt'`;
    /// mysql: `-- --table -e 'SHOW TABLES'`).
    #[arg(last = true, value_name = "CLIENT_ARGS", conflicts_with_all = ["execute", "info", "file"])]
    pub client_args: Vec<OsString>,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// `--instance` / `--cluster`: the endpoint from the RDS API.
#[derive(Clone, Debug, Default, Args)]
pub struct RdsSelector {
    /// Look up this DB instance's endpoint, port and engine through the RDS
    /// API (instead of --host / a URL).
    #[arg(long, value_name = "ID", conflicts_with = "cluster")]
    pub instance: Option<String>,

    /// Look up this DB cluster's writer endpoint, port and engine through
    /// the RDS API (instead of --host / a URL).
    #[arg(long, value_name = "ID")]
    pub cluster: Option<String>,

    /// With --cluster: its reader endpoint.
    #[arg(long, requires = "cluster")]
    pub reader: bool,

    /// Look up this RDS Proxy's endpoint and engine family through the RDS
    /// API (its certificate chains to the Amazon Trust Services roots).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["instance", "cluster", "proxy_endpoint"])]
    pub proxy: Option<String>,

    /// Look up this RDS Proxy endpoint (a proxy's custom endpoint) through
    /// the RDS API.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["instance", "cluster"])]
    pub proxy_endpoint: Option<String>,
}

impl RdsSelector {
    pub fn is_set(&self) -> bool {
        self.instance.is_some()
            || self.cluster.is_some()
            || self.proxy.is_some()
            || self.proxy_endpoint.is_some()
    }
}

/// `--secret` / `--master-secret`: the password (and target details) from
/// AWS Secrets Manager.
#[derive(Clone, Debug, Default, Args)]
pub struct SecretFlags {
    /// Read the password (and the user, and for RDS-style secrets the host,
    /// port, engine and database the flags leave open) from this AWS
    /// Secrets Manager secret: a name or an ARN.
    #[arg(long, value_name = "ID", conflicts_with_all = ["iam", "password_stdin", "master_secret"])]
    pub secret: Option<String>,

    /// The region of --secret when it is a name [default: the ARN's, else
    /// --region / the AWS configuration].
    #[arg(long, value_name = "REGION", requires = "secret")]
    pub secret_region: Option<String>,

    /// The RDS-managed master user secret of --instance / --cluster
    /// (ManageMasterUserPassword): its password, and the master user name.
    #[arg(long, conflicts_with_all = ["iam", "password_stdin"])]
    pub master_secret: bool,
}

/// `rdsconn doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Engine of the --host target (with --instance/--cluster: from the API).
    #[arg(long, value_enum)]
    pub engine: Option<crate::target::EngineKind>,

    #[command(flatten)]
    pub target: TargetFlags,

    /// Bound on the connection check's DNS + TCP + TLS + authentication.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub connect_timeout: humantime::Duration,
}

/// `rdsconn ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only this engine family (Aurora included).
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<crate::target::EngineKind>,

    /// `wide`: every column on a terminal too (piped text always has
    /// them); `json`: as --output json.
    #[arg(short = 'o', value_enum, value_name = "FORMAT")]
    pub format: Option<LsFormat>,

    /// Every column on a terminal (same as -o wide).
    #[arg(long)]
    pub wide: bool,
}

/// `rdsconn ls -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LsFormat {
    /// Identifier, kind, engine, status, IAM and endpoint on a terminal.
    Text,
    /// Every column.
    Wide,
    /// One JSON document.
    Json,
}

/// Target and credentials for `env`, `exec` and `doctor`.
#[derive(Debug, Args)]
pub struct TargetFlags {
    /// Target URL instead of the flags: ENGINE://USER@HOST[:PORT][/DB] (no password).
    #[arg(value_name = "URL", conflicts_with = "host")]
    pub url: Option<String>,

    /// Endpoint host name (signed for and verified against).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Endpoint port [default: the engine's].
    #[arg(short = 'P', visible_short_alias = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database user.
    #[arg(
        short = 'u',
        visible_short_alias = 'U',
        long,
        visible_alias = "username",
        value_name = "USER"
    )]
    pub user: Option<String>,

    /// Database name.
    #[arg(
        short = 'd',
        visible_short_alias = 'D',
        long,
        visible_alias = "dbname",
        value_name = "DB"
    )]
    pub database: Option<String>,

    #[command(flatten)]
    pub rds: RdsSelector,

    /// Use an IAM auth token (minted now, valid 15 minutes) as the password.
    #[arg(long, conflicts_with = "password_stdin")]
    pub iam: bool,

    /// Read the password from the first line of stdin (else PGPASSWORD /
    /// MYSQL_PWD, else a no-echo prompt on a terminal).
    #[arg(long)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub secret: SecretFlags,

    /// verify-full: chain and endpoint name; verify-ca: chain only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::tls::TlsMode::VerifyFull)]
    pub tls: crate::tls::TlsMode,

    /// The dial path. HOST:PORT: PostgreSQL tools get PGHOSTADDR; MySQL
    /// clients verify the name they dial, so they need --tls verify-ca; no
    /// URL variables are set (drivers would dial the endpoint name). A
    /// tunnel (ssh://, ssm://, socks5h://) works with `exec` only: the
    /// command reaches it through rdsconn's proxy on a private socket.
    #[arg(long, value_name = "VIA")]
    pub via: Option<String>,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// `env` and `exec`: an engine and a target.
#[derive(Debug, Args)]
pub struct ChildArgs {
    /// mysql (or mariadb) or postgres (or psql, pg).
    #[arg(value_enum, value_name = "ENGINE")]
    pub engine: crate::target::EngineKind,

    #[command(flatten)]
    pub target: TargetFlags,
}

/// `rdsconn env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub target: ChildArgs,

    /// Syntax of the output: sh, fish, json or dotenv [default: sh; json
    /// with --output json].
    #[arg(
        long = "format",
        visible_alias = "shell",
        value_enum,
        value_name = "FORMAT"
    )]
    pub shell: Option<crate::native::Shell>,
}

/// `rdsconn exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub target: ChildArgs,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `rdsconn proxy`.
#[derive(Clone, Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
pub struct ProxyArgs {
    #[command(subcommand)]
    pub action: Option<ProxyAction>,

    /// mysql (or mariadb) or postgres (or psql, pg).
    #[arg(value_enum, value_name = "ENGINE", required_unless_present = "config")]
    pub engine: Option<crate::target::EngineKind>,

    /// Serve every [targets.NAME] of this TOML file in one process: each
    /// table's keys are this command's long flag names (engine, host,
    /// instance, cluster, proxy, secret, user, port, iam, via, tls,
    /// listen, …); the operations flags stay on the command line.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The endpoint: HOST[:PORT], or a URL ENGINE://[USER@]HOST[:PORT] (a
    /// database in it is ignored: clients choose theirs).
    #[arg(value_name = "TARGET", conflicts_with = "host")]
    pub url: Option<String>,

    /// Endpoint host name (signed for and verified against).
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Endpoint port [default: the engine's].
    #[arg(short = 'P', visible_short_alias = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Serve this database user only [default: whichever user a client
    /// names].
    #[arg(
        short = 'u',
        visible_short_alias = 'U',
        long,
        visible_alias = "username",
        value_name = "USER"
    )]
    pub user: Option<String>,

    #[command(flatten)]
    pub rds: RdsSelector,

    /// Log in upstream with IAM auth tokens, minted per user.
    #[arg(long, conflicts_with = "password_stdin")]
    pub iam: bool,

    /// Log in upstream with the password on the first line of stdin (else
    /// PGPASSWORD / MYSQL_PWD, else a no-echo prompt on a terminal).
    #[arg(long)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub secret: SecretFlags,

    /// verify-full: chain and endpoint name; verify-ca: chain only.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::tls::TlsMode::VerifyFull)]
    pub tls: crate::tls::TlsMode,

    /// The dial path, while signing and verifying for the endpoint name:
    /// HOST:PORT (a forward of your own), ssh://[USER@]BASTION[:PORT]
    /// (the system ssh, your ~/.ssh/config), ssm://INSTANCE-ID or
    /// ssm://tag:Name=VALUE (session-manager-plugin), socks5h://HOST:PORT
    /// (ALL_PROXY too, unless NO_PROXY exempts the endpoint). One tunnel serves every client.
    #[arg(long, value_name = "VIA")]
    pub via: Option<String>,

    /// Bound on each upstream DNS + TCP + TLS + authentication.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub connect_timeout: humantime::Duration,

    /// Where clients connect: IP:PORT, localhost:PORT, PORT (on 127.0.0.1;
    /// 0 picks a free port) or unix:PATH (0600, in a directory only you can
    /// enter; psql wants DIR/.s.PGSQL.PORT). Repeatable [default:
    /// 127.0.0.1:0].
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Vec<String>,

    /// Allow --listen on addresses other machines can reach. Pair it with
    /// --local-password.
    #[arg(long)]
    pub allow_remote: bool,

    /// Clients must give this password (from RDSCONN_LOCAL_PASSWORD, else a
    /// no-echo prompt). Without it, anyone who can reach the listener
    /// connects as the database user they name.
    #[arg(long)]
    pub local_password: bool,

    /// Close a client that has not completed its login (startup packet or
    /// handshake, and the local password) within this long.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub client_login_timeout: humantime::Duration,

    /// Turn away connections beyond this many at once [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// none: one upstream login per client (no pool). session: a server
    /// connection per client session, reset (ROLLBACK, DISCARD ALL /
    /// COM_RESET_CONNECTION) and reused. transaction (PostgreSQL): a
    /// server connection per transaction; session state (SET, LISTEN,
    /// temporary tables, advisory locks, …) pins the client to its own.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::proxy::pool::PoolMode::None)]
    pub pool_mode: crate::proxy::pool::PoolMode,

    /// Server connections per pool (a pool per user and database) at most.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pool_size: u32,

    /// Server connections per pool kept open (warm) even when idle.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub min_pool_size: u32,

    /// How long a client waits for a server connection; then PostgreSQL
    /// 53300 / MySQL 1040 (too many connections).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "30s")]
    pub pool_timeout: humantime::Duration,

    /// Close a pooled server connection idle this long.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10m")]
    pub server_idle_timeout: humantime::Duration,

    /// Close a pooled server connection this long after its login (when it
    /// is next idle): an IAM login stays valid past its token's 15 minutes,
    /// and is renewed here.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "1h")]
    pub server_lifetime: humantime::Duration,

    /// New upstream logins per second at most, across the pools (RDS
    /// advises under 200 IAM logins per second): a storm queues.
    #[arg(long, value_name = "N", default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_logins_per_second: u32,

    /// After SIGINT / SIGTERM (or /quitquitquit), how long new
    /// connections are still accepted while readiness already says no (a
    /// load balancer's time to stop sending).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "0s")]
    pub min_sigterm_delay: humantime::Duration,

    /// Then, with the listeners closed, how long open connections may go
    /// on before they are closed.
    #[arg(
        long,
        visible_alias = "shutdown-grace",
        value_name = "DURATION",
        value_parser = duration,
        default_value = "10s"
    )]
    pub max_sigterm_delay: humantime::Duration,

    /// Exit 0 after a shutdown by SIGTERM / SIGINT / /quitquitquit (else
    /// 143 / 130, as shells report a signal).
    #[arg(long)]
    pub exit_zero_on_sigterm: bool,

    /// Serve /startup, /liveness, /readiness and /upstream on the HTTP
    /// listener (--http-address, --http-port). Readiness never dials the
    /// database.
    #[arg(long)]
    pub health_check: bool,

    /// Log lines as text (with a timestamp) or one JSON object per line
    /// (timestamp, level, message, and each connection's fields).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The same as --log-format json.
    #[arg(long)]
    pub structured_logs: bool,

    /// Serve Prometheus metrics at /metrics on the HTTP listener
    /// (--http-address, --http-port).
    #[arg(long)]
    pub prometheus: bool,

    /// The HTTP listener's address.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub http_address: std::net::IpAddr,

    /// The HTTP listener's port.
    #[arg(long, value_name = "PORT", default_value_t = 9090)]
    pub http_port: u16,

    /// Log in upstream in the background this often and report the last
    /// result at /upstream (off unless set; readiness never depends on it).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub upstream_check_interval: Option<humantime::Duration>,

    /// Accept POST /quitquitquit on 127.0.0.1:--admin-port: a shutdown as
    /// by SIGTERM (`rdsconn proxy shutdown` sends it).
    #[arg(long)]
    pub quitquitquit: bool,

    /// The admin port (on 127.0.0.1) for /quitquitquit.
    #[arg(long, value_name = "PORT", default_value_t = 9091)]
    pub admin_port: u16,

    /// Log in upstream once at start-up; exit with the error if that fails.
    #[arg(long)]
    pub run_connection_test: bool,

    /// Worker threads serving connections (logins, TLS, relaying)
    /// [default: one per available core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Print help (-h is --host here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// `proxy --log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `rdsconn proxy wait` / `rdsconn proxy shutdown`: talk to a running proxy.
#[derive(Clone, Debug, Subcommand)]
pub enum ProxyAction {
    /// Wait until a proxy's /startup answers 200 (for an app container's
    /// entrypoint: `rdsconn proxy wait && exec app`); exit 4 at --max.
    Wait(ProxyWaitArgs),
    /// Ask a proxy started with --quitquitquit to shut down, as SIGTERM
    /// does (for a Kubernetes preStop hook).
    Shutdown(ProxyShutdownArgs),
}

#[derive(Clone, Debug, Args)]
pub struct ProxyWaitArgs {
    /// The proxy's --http-address.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub http_address: std::net::IpAddr,

    /// The proxy's --http-port.
    #[arg(long, value_name = "PORT", default_value_t = 9090)]
    pub http_port: u16,

    /// Give up (exit 4) after this long.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "30s")]
    pub max: humantime::Duration,

    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Clone, Debug, Args)]
pub struct ProxyShutdownArgs {
    /// The proxy's --admin-port (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 9091)]
    pub admin_port: u16,

    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
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

/// The longest duration any flag takes: a day. Beyond it a timeout is a
/// typo, and deadlines computed from it would overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_hours(24);

/// What `rdsconn mysql` says to a password in argv.
pub const ARGV_PASSWORD: &str = "a password on the command line is visible to other users: use MYSQL_PWD, --password-stdin or the prompt (-p alone)";

/// Whether `args` (the whole command line) pass `rdsconn mysql` a password
/// as mysql's `-pSECRET` or `--password=SECRET`: checked before parsing
/// (clap would echo the value in its error), so that the refusal is
/// the same for every spelling and no part of the password is echoed.
pub fn has_argv_password(args: &[std::ffi::OsString]) -> bool {
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    if !words.any(|w| w == "mysql" || w == "mariadb") {
        return false;
    }
    words
        .take_while(|w| w != "--")
        .any(|w| (w.starts_with("-p") && w.len() > 2) || w.starts_with("--password="))
}

/// `token --expires-in`: whole seconds from 1 s to one week, Aurora
/// DSQL's bounds; a bare number is seconds, as `aws dsql
/// generate-db-connect-auth-token --expires-in 3600` takes it.
fn dsql_lifetime(raw: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = match raw.trim().parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs).into(),
        Err(_) => raw
            .parse()
            .map_err(|e| format!("{e} (expected seconds, or e.g. 15m, 1h, 7days)"))?,
    };
    if d.as_secs() < 1 || *d > crate::token::DSQL_MAX_LIFETIME {
        return Err("a DSQL token lives 1s to 604800s (one week)".into());
    }
    if d.subsec_nanos() != 0 {
        return Err("whole seconds only: the token counts its lifetime in seconds".into());
    }
    Ok(d)
}

/// A duration flag (`30s`, `2m`, `1h 30m`), at most [`MAX_DURATION`].
fn duration(raw: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = raw.parse().map_err(|e| format!("{e}"))?;
    if *d > MAX_DURATION {
        return Err(format!("{raw} is longer than the 24h this flag allows"));
    }
    Ok(d)
}

/// The command line as users see it: [`Cli`] with each command's flags
/// under headings (target, authentication, TLS, tunnel, output, and the
/// command's own), the global flags last. Parsing, completions and the
/// man page all use it.
pub fn command() -> clap::Command {
    with_headings(<Cli as clap::CommandFactory>::command())
        .mut_subcommand("proxy", |proxy| proxy.mut_args(with_proxy_env))
}

/// Every `rdsconn proxy` flag can come from `RDSCONN_PROXY_<FLAG>` (a
/// container's or a unit's environment); a flag on the command line wins.
fn with_proxy_env(arg: clap::Arg) -> clap::Arg {
    if arg.is_global_set() || arg.get_env().is_some() {
        return arg;
    }
    let id = arg.get_id().as_str();
    let name = match id {
        "help" | "client_args" => return arg,
        "url" => "TARGET".to_string(),
        other => other.to_ascii_uppercase(),
    };
    // Built once per run: the few bytes of each name are leaked on purpose
    // (clap keeps `&'static` names without its `string` feature).
    let var: &'static str = Box::leak(format!("RDSCONN_PROXY_{name}").into_boxed_str());
    let takes_no_value = matches!(
        arg.get_action(),
        clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
    );
    let arg = arg.env(var);
    if takes_no_value {
        arg.value_parser(clap::builder::BoolishValueParser::new())
    } else {
        arg
    }
}

/// Parses argv with [`command`].
pub fn parse_from(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let mut matches = command().try_get_matches_from(args)?;
    <Cli as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)
}

fn with_headings(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| match heading(&arg) {
        Some(h) => arg.help_heading(h),
        None => arg,
    })
    .mut_subcommands(with_headings)
}

/// The help heading of a flag, by its name.
fn heading(arg: &clap::Arg) -> Option<&'static str> {
    if arg.is_global_set() {
        return Some("Global options");
    }
    Some(match arg.get_id().as_str() {
        "url" | "urls" | "host" | "port" | "user" | "database" | "engine" | "instance"
        | "cluster" | "reader" | "proxy" | "proxy_endpoint" | "dsql" => "Target",
        "file" if arg.get_short().is_none() => "Target",
        "iam" | "password" | "no_password" | "password_stdin" | "secret" | "secret_region"
        | "master_secret" | "defaults_file" | "admin" | "expires_in" | "local_password" => {
            "Authentication"
        }
        "tls" => "TLS",
        "via" | "connect_timeout" => "Tunnel and network",
        "execute" | "file" | "info" | "client" | "client_args" | "query" | "shell" | "format"
        | "wide" => "Output",
        "wait" | "wait_all" | "concurrency" | "warn_cert_days" | "strict" => "Checking",
        "listen"
        | "max_connections"
        | "client_login_timeout"
        | "allow_remote"
        | "threads"
        | "config" => "Proxy",
        "pool_mode"
        | "pool_size"
        | "min_pool_size"
        | "pool_timeout"
        | "server_idle_timeout"
        | "server_lifetime"
        | "max_logins_per_second" => "Pooling",
        "min_sigterm_delay"
        | "max_sigterm_delay"
        | "exit_zero_on_sigterm"
        | "health_check"
        | "prometheus"
        | "log_format"
        | "structured_logs"
        | "http_address"
        | "http_port"
        | "upstream_check_interval"
        | "quitquitquit"
        | "admin_port"
        | "run_connection_test" => "Operations",
        _ => return None,
    })
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
            Self::Targets(_) => "targets",
            Self::Policy(_) => "policy",
            Self::User(_) => "user",
            Self::Audit(_) => "audit",
            Self::Completions(_) => "completions",
            Self::Man(_) => "man",
            Self::Version => "version",
        }
    }
}

/// `rdsconn --version --verbose` (and `-V -v`, in any order, nothing else
/// on the line): clap prints `--version` on its own before any other flag
/// is read, so this form is answered before parsing.
pub fn verbose_version_request(args: &[OsString]) -> bool {
    let (mut version, mut verbose) = (false, false);
    for word in args.iter().skip(1) {
        match word.to_str() {
            Some("--version") => version = true,
            Some("--verbose") => verbose = true,
            // -V, -v, -vv, -vV: short flags together.
            Some(w)
                if w.len() > 1
                    && w.starts_with('-')
                    && w[1..].chars().all(|c| c == 'v' || c == 'V') =>
            {
                version |= w.contains('V');
                verbose |= w.contains('v');
            }
            _ => return false,
        }
    }
    version && verbose
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn region_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["rdsconn", "ca", "path", "--region", "eu-west-1"]).unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(
            cli.command,
            Command::Ca(CaArgs {
                action: CaCommand::Path(CaForArgs { for_host: None })
            })
        ));
    }
}
