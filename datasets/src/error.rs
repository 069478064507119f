use std::path::{Path, PathBuf};

/// A dataset problem, always naming the file and, for content errors, the line.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Line { path: PathBuf, line: usize, msg: String },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
}

impl DatasetError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io { path: path.to_path_buf(), source }
    }
    pub fn line(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        DatasetError::Line { path: path.to_path_buf(), line, msg: msg.into() }
    }
    pub fn file(path: &Path, msg: impl Into<String>) -> Self {
        DatasetError::File { path: path.to_path_buf(), msg: msg.into() }
    }
}

pub type Result<T> = std::result::Result<T, DatasetError>;

/// How loaders treat malformed lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Skip malformed lines and count them instead of failing on the first one.
    pub skip_bad_lines: bool,
}

/// What a loader read.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub lines: usize,
    pub records: usize,
    pub skipped_bad: usize,
    /// The first few skipped lines' errors, for the user.
    pub bad_examples: Vec<String>,
}

impl LoadStats {
    /// Either fail with `err` or record it as a skipped line, per `opts`.
    pub fn bad(&mut self, opts: LoadOptions, err: DatasetError) -> Result<()> {
        if !opts.skip_bad_lines {
            return Err(err);
        }
        self.skipped_bad += 1;
        if self.bad_examples.len() < 5 {
            self.bad_examples.push(err.to_string());
        }
        Ok(())
    }
}
