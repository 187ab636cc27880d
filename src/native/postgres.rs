//! The hand-off to psql: libpq's variables (`PGHOST`, `PGHOSTADDR` for
//! `--via`, `PGSSLMODE`…) in the child's environment only.

use std::ffi::OsString;
use std::path::Path;

use super::{Client, ClientConn, EnvVar, Launch, NativeClient};
use crate::error::Error;
use crate::target::Target;
use crate::tls::TlsMode;

pub(super) struct Postgres;

impl Client for Postgres {
    fn check(&self, _target: &Target, _mode: TlsMode) -> Result<(), Error> {
        // libpq verifies `host=` while dialing `hostaddr=`: --via is fine.
        Ok(())
    }

    fn env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar> {
        let target = conn.target;
        let host = target.host.as_str();
        let mut vars = vec![EnvVar::new("PGHOST", host)];
        if let Some(addr) = conn.via_addr {
            vars.push(EnvVar::new("PGHOSTADDR", addr.to_string()));
        }
        vars.push(EnvVar::new("PGPORT", conn.dial_port().to_string()));
        vars.push(EnvVar::new("PGUSER", &target.user));
        if let Some(db) = &target.database {
            vars.push(EnvVar::new("PGDATABASE", db));
        }
        vars.push(EnvVar::new("PGSSLMODE", conn.mode.as_str()));
        let ca = conn.ca_file.to_string_lossy();
        vars.push(EnvVar::new("PGSSLROOTCERT", ca.as_ref()));
        vars.push(EnvVar::new("PGPASSWORD", conn.secret.expose()));
        if conn.via_addr.is_some() {
            // Only libpq reads hostaddr: no URL would verify the endpoint.
            return vars;
        }
        // libpq's URI form, which psycopg, SQLAlchemy, asyncpg and node-pg
        // (pg-connection-string) also read, TLS settings included.
        let params = [
            ("sslmode", conn.mode.as_str()),
            ("sslrootcert", ca.as_ref()),
        ];
        vars.push(EnvVar::new(
            "DATABASE_URL",
            super::database_url("postgresql", conn, host, &params),
        ));
        // pgjdbc reads a PEM sslrootcert and libpq's sslmode names.
        vars.push(EnvVar::new(
            "JDBC_URL",
            super::jdbc_url("postgresql", conn, host, &params),
        ));
        vars
    }

    fn socket_env(&self, conn: &ClientConn<'_>) -> Vec<EnvVar> {
        let mut vars = proxy_socket_env(conn);
        // libpq's URI names a socket directory in `host=`; asyncpg and
        // node-pg read it too.
        let (dir, port) = (socket_dir(conn), conn.target.port.to_string());
        let url = super::socket_url(
            "postgresql",
            conn,
            "",
            &[("host", &dir), ("port", &port), ("sslmode", "disable")],
        );
        vars.push(EnvVar::new("DATABASE_URL", url));
        vars
    }

    fn find(&self, given: Option<&Path>) -> Result<NativeClient, Error> {
        let program = super::find_client(
            given,
            &["psql"],
            "psql not found in PATH",
            "install it (Debian/Ubuntu: sudo apt-get install postgresql-client; \
             macOS: brew install libpq && brew link --force libpq)",
            "-c SQL",
        )?;
        Ok(NativeClient {
            program,
            mariadb: false,
        })
    }

    fn launch(
        &self,
        client: NativeClient,
        conn: &ClientConn<'_>,
        extra: &[OsString],
    ) -> Result<Launch, Error> {
        // Everything through libpq's variables, so a `-d DB` after `--`
        // changes the database but not the TLS settings.
        let env = match conn.socket {
            Some(_) => proxy_socket_env(conn),
            None => self
                .env(conn)
                .into_iter()
                .filter(|v| !super::URL_VARIABLES.contains(&v.name))
                .collect(),
        };
        Ok(Launch {
            program: client.program,
            args: extra.to_vec(),
            env,
            // A service file's settings would override the variables.
            env_remove: &["PGSERVICE"],
            secret_file: None,
        })
    }
}

/// libpq's variables for rdsconn's proxy on a private unix socket (named
/// `.s.PGSQL.PORT`, as libpq looks for it in the directory `PGHOST`):
/// no TLS on the socket (the proxy verifies upstream), the proxy's
/// one-time password.
fn proxy_socket_env(conn: &ClientConn<'_>) -> Vec<EnvVar> {
    let mut vars = vec![
        EnvVar::new("PGHOST", socket_dir(conn)),
        EnvVar::new("PGPORT", conn.target.port.to_string()),
        EnvVar::new("PGUSER", &conn.target.user),
        EnvVar::new("PGSSLMODE", "disable"),
        EnvVar::new("PGPASSWORD", conn.secret.expose()),
    ];
    if let Some(db) = &conn.target.database {
        vars.push(EnvVar::new("PGDATABASE", db));
    }
    vars
}

/// The directory of rdsconn's proxy socket (named `.s.PGSQL.PORT` after
/// the endpoint's port, where libpq looks for it).
fn socket_dir(conn: &ClientConn<'_>) -> String {
    conn.socket
        .and_then(Path::parent)
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default()
}
