//! `rdsconn completions SHELL`: a completion script on stdout. bash, zsh
//! and fish also complete `@NAME` from `rdsconn targets names` (rdsconn's
//! config files and libpq's service file, read when completing).

use clap_complete::Shell;

use crate::cli::CompletionsArgs;
use crate::error::Result;
use crate::output;

/// bash: `@…` completes from the names, anything else as clap's script.
const BASH_NAMES: &str = r#"
_rdsconn_named() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    if [[ "$cur" == @* ]]; then
        local names
        names=$(command rdsconn targets names 2>/dev/null)
        COMPREPLY=($(compgen -P @ -W "$names" -- "${cur#@}"))
        return 0
    fi
    _rdsconn "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _rdsconn_named -o nosort -o bashdefault -o default rdsconn
else
    complete -F _rdsconn_named -o bashdefault -o default rdsconn
fi
"#;

/// zsh: clap's `_rdsconn` is renamed `_rdsconn_flags`; `_rdsconn`
/// completes `@…` from the names, anything else through it.
const ZSH_NAMES: &str = r#"_rdsconn() {
    if [[ $PREFIX == @* ]]; then
        local -a names
        names=(${(f)"$(command rdsconn targets names 2>/dev/null)"})
        compset -P '@'
        compadd -a names
    else
        _rdsconn_flags "$@"
    fi
}

"#;

/// fish: `@…` completes from the names.
const FISH_NAMES: &str = r#"
complete -c rdsconn -f -n 'string match -q -- "@*" (commandline -ct)' -a '(command rdsconn targets names 2>/dev/null | string replace -r "^" "@")'
"#;

pub(crate) fn run(args: &CompletionsArgs) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli::command(),
        "rdsconn",
        &mut script,
    );
    let script = String::from_utf8_lossy(&script).into_owned();
    let script = match args.shell {
        Shell::Bash => script + BASH_NAMES,
        Shell::Zsh => script.replacen(
            "\n_rdsconn() {\n",
            &format!("\n{ZSH_NAMES}_rdsconn_flags() {{\n"),
            1,
        ),
        Shell::Fish => script + FISH_NAMES,
        _ => script,
    };
    output::raw(script.as_bytes())?;
    Ok(0)
}
