//! `migrate lint`: squawk's rules (the squawk CLI's, via squawk-linter) on each migration.
//!
//! The timeout rules (`require-timeout-settings`) stay off: the runner sets `lock_timeout`
//! and `statement_timeout` on every migration itself. A statement can be excused with
//! `-- squawk-ignore <rule> -- <reason>` on the line above it.

use serde::Serialize;
use squawk_linter::{Linter, Rule};

use super::source::Migration;

/// One rule broken by one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintFinding {
    /// The migration folder.
    pub folder: String,
    /// 1-based line in up.sql.
    pub line: usize,
    /// The squawk rule, e.g. `require-concurrent-index-creation`.
    pub rule: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when squawk says.
    pub help: Option<String>,
}

/// Lints the up.sql of every migration newer than `baseline` (older ones are history).
pub fn lint(migrations: &[Migration], baseline: Option<&str>) -> Vec<LintFinding> {
    let mut findings = Vec::new();
    for m in migrations {
        if baseline.is_some_and(|b| m.version.as_str() <= b) {
            continue;
        }
        let parsed = squawk_syntax::SourceFile::parse(&m.up);
        let mut linter = Linter::with_rules(&[], &[Rule::RequireTimeoutSettings]);
        linter.settings.assume_in_transaction = m.run_in_transaction;
        for v in linter.lint(&parsed, &m.up) {
            let offset = usize::from(v.text_range.start());
            findings.push(LintFinding {
                folder: m.folder.clone(),
                line: m.up[..offset].matches('\n').count() + 1,
                rule: v.code.to_string(),
                message: v.message,
                help: v.help,
            });
        }
    }
    findings
}
