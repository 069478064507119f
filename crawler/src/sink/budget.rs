//! The sink's disk budget: its published files (`OUT/sink_date=*/sink=NAME/`) may take at most
//! `--max-disk` bytes and be at most `--keep-days` days old; past either bound the oldest files
//! go first (retention), and day directories left empty with them. A sink on the open Internet
//! thus never fills its disk, however long it runs and whatever clients do.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

#[derive(Debug)]
struct File {
    path: PathBuf,
    bytes: u64,
    /// The day of its partition, `YYYY-MM-DD`.
    date: String,
}

#[derive(Debug)]
pub struct Budget {
    max_bytes: u64,
    keep_days: u32,
    /// Oldest first.
    files: VecDeque<File>,
    total: u64,
    /// Files deleted to stay within the budget, and their bytes.
    pub deleted: (u64, u64),
}

/// Is `name` one of the files a sink publishes?
fn ours(name: &str) -> bool {
    (name.starts_with("part-") && name.ends_with(".parquet")) || (name.starts_with("counters-") && name.ends_with(".json"))
}

impl Budget {
    /// The budget over what earlier runs of this sink left under `out`.
    pub fn scan(out: &Path, name: &str, max_bytes: u64, keep_days: u32) -> Budget {
        let mut found: Vec<(std::time::SystemTime, File)> = Vec::new();
        for day in std::fs::read_dir(out).into_iter().flatten().flatten() {
            let d = day.file_name().to_string_lossy().into_owned();
            let Some(date) = d.strip_prefix("sink_date=") else { continue };
            for f in std::fs::read_dir(day.path().join(format!("sink={name}"))).into_iter().flatten().flatten() {
                let Ok(m) = f.metadata() else { continue };
                if m.is_file() && ours(&f.file_name().to_string_lossy()) {
                    found.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), File { path: f.path(), bytes: m.len(), date: date.to_string() }));
                }
            }
        }
        found.sort_by(|a, b| (&a.1.date, a.0, &a.1.path).cmp(&(&b.1.date, b.0, &b.1.path)));
        let total = found.iter().map(|f| f.1.bytes).sum();
        Budget { max_bytes, keep_days, files: found.into_iter().map(|f| f.1).collect(), total, deleted: (0, 0) }
    }

    /// Bytes the sink's files take now.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// A file just published.
    pub fn add(&mut self, path: &Path, date: &str) {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        self.total += bytes;
        self.files.push_back(File { path: path.to_path_buf(), bytes, date: date.to_string() });
    }

    /// Delete the oldest files until the rest fit in the budget and none is older than
    /// `keep_days` before `today` (`YYYY-MM-DD`). The newest file stays even if it alone is over
    /// the byte budget (it holds the latest records).
    pub fn enforce(&mut self, today: &str) {
        let oldest_kept = (self.keep_days > 0)
            .then(|| chrono::NaiveDate::parse_from_str(today, "%Y-%m-%d").ok())
            .flatten()
            .and_then(|d| d.checked_sub_days(chrono::Days::new(self.keep_days as u64 - 1)))
            .map(|d| d.format("%Y-%m-%d").to_string());
        while let Some(f) = self.files.front() {
            let too_old = oldest_kept.as_deref().is_some_and(|k| f.date.as_str() < k);
            let too_big = self.total > self.max_bytes && self.files.len() > 1;
            if !too_old && !too_big {
                break;
            }
            let f = self.files.pop_front().expect("front exists");
            self.total -= f.bytes;
            if std::fs::remove_file(&f.path).is_ok() {
                self.deleted.0 += 1;
                self.deleted.1 += f.bytes;
            }
            // The partition and day directories go with their last file.
            if let Some(dir) = f.path.parent() {
                if std::fs::remove_dir(dir).is_ok() {
                    let _ = dir.parent().map(std::fs::remove_dir);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &Path, date: &str, name: &str, bytes: usize) -> PathBuf {
        let d = out.join(format!("sink_date={date}")).join("sink=s");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, vec![0u8; bytes]).unwrap();
        p
    }

    #[test]
    fn the_oldest_files_go_first_to_stay_within_bytes_and_days() {
        let d = tempfile::tempdir().unwrap();
        let a = put(d.path(), "2026-11-01", "part-a.parquet", 400);
        let b = put(d.path(), "2026-11-02", "counters-b.json", 300);
        let other = put(d.path(), "2026-11-02", "notes.txt", 10_000);
        let mut bu = Budget::scan(d.path(), "s", 1000, 0);
        assert_eq!((bu.bytes(), bu.files()), (700, 2), "only the sink's own files count");
        let c = put(d.path(), "2026-11-03", "part-c.parquet", 500);
        bu.add(&c, "2026-11-03");
        bu.enforce("2026-11-03");
        assert!(!a.exists() && b.exists() && c.exists() && other.exists());
        assert!(!d.path().join("sink_date=2026-11-01").exists(), "an emptied day goes too");
        assert_eq!((bu.bytes(), bu.deleted), (800, (1, 400)));
        // Keep 1 day: only today's file stays.
        let mut bu = Budget::scan(d.path(), "s", 1 << 30, 1);
        bu.enforce("2026-11-03");
        assert!(!b.exists() && c.exists() && other.exists(), "a stranger's file in the partition is never deleted");
        // The newest file stays even alone over the budget.
        let mut bu = Budget::scan(d.path(), "s", 10, 0);
        bu.enforce("2026-11-03");
        assert!(c.exists());
    }
}
