//! Parse errors with the Dockerfile span.

use std::fmt;

/// A Dockerfile error at a position: displays as `FILE:LINE:COL: message`, then the source line
/// and a caret under the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The Dockerfile's name as given to `parse`.
    pub file: String,
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based, in characters.
    pub column: usize,
    /// How many characters the caret underlines (at least 1).
    pub len: usize,
    pub message: String,
    /// The whole source line (without its newline).
    pub source_line: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        write!(f, "\n {num} | {}", self.source_line)?;
        // Keep tabs so the caret lines up under the text.
        let lead: String = self
            .source_line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let avail = self
            .source_line
            .chars()
            .count()
            .saturating_sub(self.column - 1)
            .max(1);
        write!(
            f,
            "\n {pad} | {lead}{}",
            "^".repeat(self.len.clamp(1, avail))
        )
    }
}

impl std::error::Error for ParseError {}
