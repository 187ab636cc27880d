use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = rdsconn::cli::wants_json(&args);
    if rdsconn::cli::verbose_version_request(&args) {
        print!("{}", rdsconn::verbose_version());
        return ExitCode::SUCCESS;
    }
    if rdsconn::cli::has_argv_password(&args) {
        let e = rdsconn::error::Error::usage(rdsconn::cli::ARGV_PASSWORD);
        rdsconn::print_error(&e, json);
        return ExitCode::from(rdsconn::error::Category::Usage.exit_code());
    }
    // `@NAME` (and `service=NAME`, `PGSERVICE`) become the flags they
    // stand for, before the command line is parsed.
    let mut expanded = match rdsconn::named::expand(args) {
        Ok(expanded) => expanded,
        Err(e) => {
            rdsconn::print_error(&e, json);
            return ExitCode::from(e.exit_code());
        }
    };
    let mut cli = match rdsconn::cli::parse_from(std::mem::take(&mut expanded.args)) {
        Ok(cli) => cli,
        Err(e) => return rdsconn::report_parse_error(&e, json),
    };
    let checks = std::mem::take(&mut expanded.checks);
    if let Err(e) = rdsconn::named::attach(&mut cli, checks) {
        return rdsconn::report_parse_error(&e, json);
    }
    let json = cli.global.output == rdsconn::cli::OutputFormat::Json;
    // The proxy is a long-running server: its failures are worth seeing
    // without -v.
    let (serving, json_logs) = match &cli.command {
        rdsconn::cli::Command::Proxy(p) if p.action.is_none() => (
            true,
            p.structured_logs || p.log_format == rdsconn::cli::LogFormat::Json,
        ),
        _ => (false, false),
    };
    rdsconn::init_logging(cli.global.verbose, serving, json_logs);
    rdsconn::named::report(&expanded);
    let runtime = rdsconn::runtime(&cli);
    let result = match runtime {
        Ok(rt) => {
            let result = rt.block_on(rdsconn::run(cli));
            // A DNS lookup that outlived its timeout still runs on a
            // blocking thread (getaddrinfo cannot be cancelled): exit
            // without waiting for it, so that the timeout bounds the run.
            rt.shutdown_background();
            result
        }
        Err(e) => Err(rdsconn::error::Error::new(
            rdsconn::error::Category::Runtime,
            e,
        )),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            rdsconn::print_error(&e, json);
            ExitCode::from(e.exit_code())
        }
    }
}
