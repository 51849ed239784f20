//! `labels`: the ground truth of every user ([`ampsim_engine::labels`]) in one Parquet file,
//! `<simulation>_labels.parquet`, as the server wrote it (ExportLabels). Saved through a
//! temporary name and renamed once its last chunk is in, like every export.

use super::files::{FileInfo, Staged};
use super::{ExportOptions, Result};
use std::io::Write as _;

/// The labels file's name.
pub fn file_name(simulation_id: &str) -> String {
    format!("{simulation_id}_labels.parquet")
}

/// Saves the file of an ExportLabels stream in `opts.out_dir`. If the stream fails, nothing
/// is left under the final name.
///
/// # Errors
/// [`super::Error::Stream`] when the stream fails; [`super::Error::BadFile`] for chunks that do
/// not make one whole file; [`super::Error::Exists`] and I/O errors as for any export.
pub async fn save_labels<S, E>(
    mut stream: S,
    opts: &ExportOptions,
    mut progress: impl FnMut(u64),
) -> Result<super::ExportSummary>
where
    S: tokio_stream::Stream<Item = std::result::Result<crate::pb::FileChunk, E>> + Unpin,
    E: std::fmt::Display,
{
    use tokio_stream::StreamExt;
    super::prepare_out_dir(opts)?;
    let bad = |m: String| super::Error::BadFile(m);
    let mut open: Option<(Staged, std::io::BufWriter<std::fs::File>)> = Some(Staged::create(
        &opts.out_dir,
        &file_name(&opts.simulation_id),
    )?);
    let mut written = 0u64;
    let mut done: Option<FileInfo> = None;
    while let Some(item) = stream.next().await {
        let chunk = item.map_err(|e| super::Error::Stream(e.to_string()))?;
        let Some((staged, out)) = open.as_mut() else {
            return Err(bad("a chunk came after the labels file was complete".into()));
        };
        // Blocking writes of at most 1 MiB into a buffered file: short enough for the runtime.
        out.write_all(&chunk.data)
            .map_err(super::files::io_err(staged.path()))?;
        written += chunk.data.len() as u64;
        progress(written);
        if chunk.last {
            if written != chunk.size {
                return Err(bad(format!(
                    "the labels file has {written} bytes where the server announced {}",
                    chunk.size
                )));
            }
            let (staged, out) = open.take().expect("the file is open");
            // The flush, fsync and rename block: tell the runtime.
            done = Some(tokio::task::block_in_place(|| {
                staged.commit(out, chunk.events)
            })?);
        }
    }
    match done {
        Some(f) => Ok(super::ExportSummary {
            events: f.events,
            bytes: f.bytes,
            files: vec![f],
        }),
        None => Err(bad("the stream ended inside the labels file".into())),
    }
}
