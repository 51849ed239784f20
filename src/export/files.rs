//! Files that appear under their final name only once complete: written as
//! `.<name>.partial` in the same directory, synced, then renamed.

use super::{Error, Result};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Suffix of the temporary name (after a leading dot and the final name).
pub(super) const PARTIAL_SUFFIX: &str = ".partial";

/// One completed export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its path (the output directory joined with its name).
    pub path: PathBuf,
    /// Events in it.
    pub events: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A file being written under its temporary name. Dropped without [`Staged::commit`], it is
/// deleted, so its final name never holds a partial file.
pub(super) struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates (or truncates) the temporary file for `dir/name`, with a 1 MiB buffer.
    pub(super) fn create(dir: &Path, name: &str) -> Result<(Staged, BufWriter<File>)> {
        let tmp = dir.join(format!(".{name}{PARTIAL_SUFFIX}"));
        let file = File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok((
            Staged {
                tmp,
                dest: dir.join(name),
                committed: false,
            },
            BufWriter::with_capacity(1 << 20, file),
        ))
    }

    /// The temporary path, for error messages.
    pub(super) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes and syncs the written file, then renames it to its final name.
    pub(super) fn commit(mut self, out: BufWriter<File>, events: u64) -> Result<FileInfo> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io(&self.tmp))?;
        file.sync_all().map_err(io(&self.tmp))?;
        let bytes = file.metadata().map_err(io(&self.tmp))?.len();
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(io(&self.dest))?;
        self.committed = true;
        Ok(FileInfo {
            path: self.dest.clone(),
            events,
            bytes,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Maps an I/O error to [`Error::Io`] on `path`.
pub(super) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
