//! Applying the directive table to raw trees: the shape of each directive
//! (known name, context, block or not, arity, duplicates) is checked here,
//! once, then its `apply` fills the current [`Scope`]. `include` is spliced
//! in place, in whatever context it appears.

use std::path::Path;

use super::diag::{Diagnostic, FileId, Report, Span};
use super::directives::{self, Action, Args, Directive};
use super::grammar::RawDirective;
use super::include::Includes;
use super::scope::{Context, Scope};

/// The top-level scope of `path` with everything included; `None` when the
/// file itself cannot be read or parsed. `failed` tells whether any file had
/// a syntax error (the caller then skips semantic checks, which would only
/// report consequences).
pub struct Walked {
    pub main: Option<Scope>,
    pub failed: bool,
}

pub fn walk(path: &Path, report: &mut Report) -> Walked {
    let mut walker = Walker {
        report,
        includes: Includes::default(),
    };
    let main = walker
        .includes
        .open_root(path, walker.report)
        .and_then(|source| {
            let tree = walker.includes.parse(&source, walker.report);
            let main = tree.map(|tree| {
                let mut main = Scope::new(
                    Context::Main,
                    Span {
                        file: FileId(0),
                        start: 0,
                        end: 0,
                    },
                );
                walker.block(&tree, &mut main);
                main
            });
            walker.includes.leave();
            main
        });
    Walked {
        main,
        failed: walker.includes.failed,
    }
}

struct Walker<'r> {
    report: &'r mut Report,
    includes: Includes,
}

impl Walker<'_> {
    fn block(&mut self, tree: &[RawDirective], scope: &mut Scope) {
        // A scope is a kilobyte: room for the nested ones at once, rather
        // than moving thousands of them each time the vector grows.
        scope
            .blocks
            .reserve(tree.iter().filter(|d| d.block.is_some()).count());
        for directive in tree {
            self.directive(directive, scope);
        }
    }

    fn directive(&mut self, raw: &RawDirective, scope: &mut Scope) {
        let entry = match self.check_shape(raw, scope) {
            Ok(entry) => entry,
            Err(known) => {
                // A known block in the wrong place or with the wrong number
                // of arguments: its contents are still checked, for the
                // context it opens, though it takes no part in the result.
                if let (Some(entry), Some(body)) = (known, &raw.block) {
                    if let Action::Open(context, _) = entry.action {
                        self.block(body, &mut Scope::new(context, raw.name.span));
                    }
                }
                return;
            }
        };
        let dir = self.report.sources[raw.name.span.file.0].dir.clone();
        let args = Args {
            name: &raw.name,
            values: &raw.args,
            dir: &dir,
        };
        match entry.action {
            Action::Set(apply) => {
                self.apply(apply, scope, &args);
            }
            Action::Open(context, apply) => {
                let mut child = Scope::new(context, raw.name.span);
                let directives = raw.block.as_ref().map_or(0, Vec::len);
                child.seen.reserve_exact(directives);
                // A bad header (`location nos`) is reported and leaves the
                // block without its URI or name, which build skips; what is
                // inside is checked all the same.
                self.apply(apply, &mut child, &args);
                self.block(raw.block.as_deref().unwrap_or_default(), &mut child);
                scope.blocks.push(child);
            }
            Action::Include => self.include(raw, scope),
        }
    }

    /// Runs `apply`, reporting a bad argument. True when it succeeded.
    fn apply(
        &mut self,
        apply: fn(&mut Scope, &Args) -> Result<(), directives::ArgError>,
        scope: &mut Scope,
        args: &Args,
    ) -> bool {
        match apply(scope, args) {
            Ok(()) => true,
            Err(e) => {
                let at = args.values.get(e.arg).map_or(args.name.span, |t| t.span);
                self.report
                    .push(Diagnostic::error(at, "invalid-argument", e.message));
                false
            }
        }
    }

    fn include(&mut self, raw: &RawDirective, scope: &mut Scope) {
        let Some(pattern) = raw.args.first() else {
            return;
        };
        let Some(matches) = self.includes.resolve(pattern, self.report) else {
            scope.incomplete = true;
            return;
        };
        for m in matches {
            let Some(source) = self.includes.enter(&m, pattern.span, self.report) else {
                scope.incomplete = true;
                continue;
            };
            match self.includes.parse(&source, self.report) {
                Some(tree) => self.block(&tree, scope),
                None => scope.incomplete = true,
            }
            self.includes.leave();
        }
    }

    /// The table entry for `raw`, once its name, context, block, arity and
    /// uniqueness are right; otherwise reports why not, and gives the entry
    /// if the name is known.
    fn check_shape(
        &mut self,
        raw: &RawDirective,
        scope: &mut Scope,
    ) -> Result<&'static Directive, Option<&'static Directive>> {
        let name: &str = &raw.name.text;
        let at = raw.name.span;
        let Some(entry) = directives::lookup(name, scope.context) else {
            let hint = directives::did_you_mean(name)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            self.fail(
                at,
                "unknown-directive",
                format!("unknown directive \"{name}\"{hint}"),
            );
            return Err(None);
        };
        if !entry.contexts.contains(scope.context) {
            let place = match scope.context {
                Context::Main => "at the top level".to_string(),
                other => format!("in {}", other.name()),
            };
            let allowed = directives::contexts_of(name).names();
            return self.fail_known(
                entry,
                at,
                "wrong-context",
                format!("\"{name}\" is not allowed {place} (allowed in: {allowed})"),
            );
        }
        let first = scope.seen(entry.name);
        // Recorded even if the rest fails: "server has no listen" after a
        // bad `listen` would only repeat the problem.
        scope.seen.push((entry.name, at));
        if entry.opens_block() != raw.block.is_some() {
            let usage = format!("{name} {}", entry.usage);
            let what = if entry.opens_block() {
                "needs a block"
            } else {
                "takes no block"
            };
            return self.fail_known(
                entry,
                at,
                "block-shape",
                format!("\"{name}\" {what} (usage: {usage})"),
            );
        }
        if !entry.arity.accepts(raw.args.len()) {
            let usage = format!("{name} {}", entry.usage);
            return self.fail_known(
                entry,
                at,
                "wrong-arity",
                format!("wrong number of arguments for \"{name}\" (usage: {usage})"),
            );
        }
        if !entry.repeatable {
            if let Some((_, first)) = first {
                let first = self.report.where_is(first, at);
                return self.fail_known(
                    entry,
                    at,
                    "duplicate-directive",
                    format!("duplicate \"{name}\" (first set at {first})"),
                );
            }
        }
        Ok(entry)
    }

    fn fail(&mut self, at: Span, name: &'static str, message: String) {
        self.report.push(Diagnostic::error(at, name, message));
    }

    fn fail_known(
        &mut self,
        entry: &'static Directive,
        at: Span,
        name: &'static str,
        message: String,
    ) -> Result<&'static Directive, Option<&'static Directive>> {
        self.fail(at, name, message);
        Err(Some(entry))
    }
}
