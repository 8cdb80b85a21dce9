//! The event loop and everything that touches sockets and pipes.

use std::path::Path;

/// Load `config` and serve it until SIGINT/SIGTERM.
pub fn run(config: &Path) -> anyhow::Result<()> {
    let (table, report) = crate::config::load(config);
    eprint!("{}", report.render_text());
    let _table =
        table.ok_or_else(|| anyhow::anyhow!("{}: configuration has errors", config.display()))?;
    Ok(())
}
