//! This build's facts (set by build.rs): what `rdsconn version --verbose`
//! prints and the proxy's `rdsconn_build_info` carries.

use serde::Serialize;

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
