//! `rdsconn man`: the man page as roff, or one page per subcommand in a
//! directory (for packagers).

use crate::cli::ManArgs;
use crate::error::{Category, Result, ResultExt};
use crate::output;

pub(crate) fn run(args: &ManArgs) -> Result<u8> {
    let cmd = crate::cli::command();
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .category_with(Category::Runtime, || {
                format!("writing man pages to {}", dir.display())
            })?;
        return Ok(0);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .category(Category::Runtime)?;
    output::raw(&page)?;
    Ok(0)
}
