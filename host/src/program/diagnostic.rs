//! Errors about a program a person can act on: where (file:line:column, or
//! the command-line override), what is wrong, and what to do about it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where a piece of program configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A byte range of program.toml.
    File(Range<usize>),
    /// A `--set` override on the command line (the override's text).
    Override(String),
    /// Nowhere in particular (a default, or the program as a whole).
    Program,
}

/// A resolved place in a program, kept for problems found after loading
/// (e.g. an edge whose types do not match): file line and column, or the
/// `--set` override.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub line_col: Option<(usize, usize)>,
    pub override_text: Option<String>,
}

impl Place {
    pub fn of(source: &str, origin: &Origin) -> Place {
        match origin {
            Origin::File(span) => Place {
                line_col: Some(line_col(source, span.start)),
                override_text: None,
            },
            Origin::Override(text) => Place {
                line_col: None,
                override_text: Some(text.clone()),
            },
            Origin::Program => Place::default(),
        }
    }
}

/// One problem with a program: location, message, and a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column, when the problem is in the file.
    pub line_col: Option<(usize, usize)>,
    /// The override the problem came from, when it came from `--set`.
    pub override_text: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, source: &str, origin: &Origin, message: impl Into<String>) -> Self {
        Diagnostic::at(file, &Place::of(source, origin), message)
    }

    /// A problem at a place resolved earlier.
    pub fn at(file: &Path, place: &Place, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line_col: place.line_col,
            override_text: place.override_text.clone(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line_col, &self.override_text) {
            (Some((line, col)), _) => write!(f, "{}:{line}:{col}: ", self.file.display())?,
            (None, Some(text)) => write!(f, "--set {text}: ")?,
            (None, None) => write!(f, "{}: ", self.file.display())?,
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
    }

    #[test]
    fn display_names_file_line_and_help() {
        let d =
            Diagnostic::new(Path::new("p.toml"), "x\ny", &Origin::File(2..3), "bad").help("fix it");
        assert_eq!(d.to_string(), "p.toml:2:1: bad\n  help: fix it");
        let d = Diagnostic::new(
            Path::new("p.toml"),
            "",
            &Origin::Override("a.b=1".into()),
            "bad",
        );
        assert_eq!(d.to_string(), "--set a.b=1: bad");
    }
}
