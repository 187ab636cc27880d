use std::process::ExitCode;

use clap::Parser;
use rdsconn::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return rdsconn::report_parse_error(&e),
    };
    // The proxy is a long-running server: its failures are worth seeing
    // without -v. One thread serves all its connections: the relay's cost
    // is mostly in the kernel's TCP and scheduler work (BENCHMARKS.md).
    let serving = matches!(cli.command, rdsconn::cli::Command::Proxy(_));
    rdsconn::init_logging(cli.global.verbose, serving);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(rdsconn::run(cli)),
        Err(e) => Err(rdsconn::error::Error::new(
            rdsconn::error::Category::Runtime,
            e,
        )),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            e.print(std::io::stderr().lock());
            ExitCode::from(e.category().exit_code())
        }
    }
}
