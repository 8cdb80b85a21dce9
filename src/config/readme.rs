//! The README's directive reference, generated from the directive table so
//! the two cannot drift (a test compares them).

use super::directives::{DefaultValue, DIRECTIVES};

/// The Markdown table between the README's `directives:begin` and
/// `directives:end` markers (without the markers).
pub fn directive_reference() -> String {
    let mut out = String::from(
        "| directive | arguments | contexts | default | description |\n|---|---|---|---|---|\n",
    );
    for d in DIRECTIVES {
        let default = match d.default {
            DefaultValue::Unset => String::new(),
            DefaultValue::Value(v) => format!("`{v}`"),
            DefaultValue::Note(n) => n.to_string(),
        };
        let repeat = if d.repeatable && !d.opens_block() {
            ", repeatable"
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {}{repeat} | {default} | {} |\n",
            d.name,
            d.usage.replace('|', "\\|"),
            d.contexts.letters(),
            d.doc.replace('|', "\\|"),
        ));
    }
    out.push_str(
        "\nContexts: G is the top level, S a `server` block, L a `location` block, \
         upstream an `upstream` block. `include` works in every context.\n",
    );
    out
}
