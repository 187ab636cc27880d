//! `rdsconn completions SHELL`: a completion script on stdout.

use crate::cli::CompletionsArgs;
use crate::error::Result;
use crate::output;

pub(crate) fn run(args: &CompletionsArgs) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli::command(),
        "rdsconn",
        &mut script,
    );
    output::raw(&script)?;
    Ok(0)
}
