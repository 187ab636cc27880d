//! `rdsconn version` (and `rdsconn --version --verbose`): the version, and
//! with `--verbose` (or `--output json`) what a bug report needs: the
//! commit, build date, target, compiler and TLS stack.

use crate::build_info::BUILD;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::output;

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
