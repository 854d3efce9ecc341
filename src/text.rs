//! Checks shared by the parsers of outside text (addresses, URLs): characters that make text
//! display as other text, or break a log line in two.

/// A control character (a newline included) or one of Unicode's explicit direction marks,
/// embeddings, overrides and isolates: `"\u{202e}oi.b@a"` displays as `a@b.io`.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each [`hidden`] character written as its escape (`\u{202e}`), for showing
/// input that may hold them.
pub fn shown(text: &str) -> String {
    text.chars()
        .map(|c| match hidden(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}
