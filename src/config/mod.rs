//! Configuration: files → diagnostics and a [`RoutingTable`].
//!
//! (Skeleton: the config issue fills this module in.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::routing::RoutingTable;

/// Every diagnostic of one load, with the sources needed to render them.
#[derive(Debug, Default)]
pub struct Report {}

impl Report {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        true
    }

    /// Every diagnostic as `path:line:col: severity: message`, the source
    /// line and a caret under the span, in file order.
    pub fn render_text(&self) -> String {
        String::new()
    }
}

/// Parse, validate and build `path`. The table is `Some` exactly when the
/// report has no error (it may hold warnings).
pub fn load(_path: &Path) -> (Option<RoutingTable>, Report) {
    (None, Report::default())
}

/// `webserv check [CONFIG...] [--format json]`: print, exit 0 or 1.
pub fn check_command(_paths: &[PathBuf], _json: bool) -> ExitCode {
    ExitCode::FAILURE
}
