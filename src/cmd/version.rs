//! `rdsconn version` (and `rdsconn --version --verbose`): the version, and
//! with `--verbose` (or `--output json`) what a bug report needs: the
//! commit, build date, target, compiler and TLS stack.

use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::output;

/// `--output json`; field names are part of the interface.
#[derive(Serialize)]
pub(crate) struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub build_date: &'static str,
    pub target: &'static str,
    pub profile: &'static str,
    pub rustc: &'static str,
    pub tls: &'static str,
}

/// This build's facts (set by build.rs).
pub(crate) const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("RDSCONN_GIT_COMMIT"),
    build_date: env!("RDSCONN_BUILD_DATE"),
    target: env!("RDSCONN_TARGET"),
    profile: env!("RDSCONN_PROFILE"),
    rustc: env!("RDSCONN_RUSTC"),
    tls: env!("RDSCONN_TLS"),
};

/// The text `--version --verbose` prints.
pub(crate) fn verbose_text() -> String {
    let b = &BUILD;
    format!(
        "rdsconn {}\ncommit: {}\nbuild date: {}\ntarget: {}\nprofile: {}\nrustc: {}\ntls: {}\n",
        b.version, b.commit, b.build_date, b.target, b.profile, b.rustc, b.tls
    )
}

pub(crate) fn run(global: &GlobalArgs) -> Result<u8> {
    if global.output == OutputFormat::Json {
        output::json(&BUILD)?;
    } else if global.verbose > 0 {
        output::raw(verbose_text().as_bytes())?;
    } else {
        output::line(&format!("rdsconn {}", BUILD.version))?;
    }
    Ok(0)
}
