//! Atomic writes of a volume's files, as the kubelet's AtomicWriter does them: the payload goes
//! into a fresh `..<timestamp>` directory, a `..data` symlink is swapped to it with one rename,
//! and per-entry symlinks `<key> -> ..data/<key>` make the files visible, so a reader sees either
//! the old or the new set of files, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use super::io_context;

/// The symlink naming the current timestamped directory of an atomically written volume.
pub const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";

/// One file of an atomically written volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a volume by relative path (`a/b.txt`).
pub type Payload = BTreeMap<String, FileContent>;

/// A payload path must stay inside the volume: relative, no `..` element, not starting with `..`
/// (the kubelet's own entries).
pub fn check_payload_path(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with("..")
        || Path::new(path).components().any(|c| !matches!(c, Component::Normal(_)));
    if bad { Err(format!("invalid file path {path:?} in volume")) } else { Ok(()) }
}

/// The files under `dir` (relative path → content and mode), following nothing.
fn read_tree(dir: &Path) -> std::io::Result<Payload> {
    let mut found = Payload::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(path);
            } else {
                let data = std::fs::read(entry.path())?;
                found.insert(path.to_string_lossy().into_owned(), FileContent { data, mode: meta.mode_bits() });
            }
        }
    }
    Ok(found)
}

pub trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for std::fs::Metadata {
    fn mode_bits(&self) -> u32 {
        self.permissions().mode() & 0o7777
    }
}

/// The first element of each payload path: the entries users see in the volume.
fn visible_entries(payload: &Payload) -> BTreeSet<String> {
    payload.keys().filter_map(|p| p.split('/').next()).map(str::to_string).collect()
}

/// Writes `payload` into `dir` atomically; `Ok(false)` when it was already there.
pub fn write_atomically(dir: &Path, payload: &Payload) -> Result<bool, String> {
    for path in payload.keys() {
        check_payload_path(path)?;
    }
    std::fs::create_dir_all(dir).map_err(io_context("creating", dir))?;
    let data_link = dir.join(DATA_LINK);
    let old = std::fs::read_link(&data_link).ok();
    let visible = visible_entries(payload);
    if let Some(old) = &old
        && read_tree(&dir.join(old)).is_ok_and(|current| &current == payload)
    {
        ensure_visible_links(dir, &visible)?;
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S").to_string();
    let nanos = jiff::Timestamp::now().subsec_nanosecond();
    let mut name = format!("..{stamp}.{nanos:09}");
    let mut attempt = 0;
    while dir.join(&name).exists() {
        attempt += 1;
        name = format!("..{stamp}.{nanos:09}-{attempt}");
    }
    let ts_dir = dir.join(&name);
    std::fs::create_dir(&ts_dir).map_err(io_context("creating", &ts_dir))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_context("setting the mode of", &ts_dir))?;
    for (relative, content) in payload {
        let path = ts_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_context("creating", parent))?;
        }
        let mut file = std::fs::File::create(&path).map_err(io_context("creating", &path))?;
        file.write_all(&content.data).map_err(io_context("writing", &path))?;
        file.set_permissions(std::fs::Permissions::from_mode(content.mode))
            .map_err(io_context("setting the mode of", &path))?;
    }
    // The swap: a new symlink renamed over `..data` replaces it in one step.
    let tmp_link = dir.join(DATA_LINK_TMP);
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&name, &tmp_link).map_err(io_context("linking", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io_context("renaming to", &data_link))?;
    ensure_visible_links(dir, &visible)?;
    for entry in std::fs::read_dir(dir).map_err(io_context("reading", dir))?.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if !entry_name.starts_with("..") && !visible.contains(&entry_name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|old| old.as_os_str() != name.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn ensure_visible_links(dir: &Path, visible: &BTreeSet<String>) -> Result<(), String> {
    for entry in visible {
        let link = dir.join(entry);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(entry), &link).map_err(io_context("linking", &link))?;
        }
    }
    Ok(())
}

#[cfg(test)]
impl FileContent {
    /// A file holding `text`.
    pub fn text(text: &str, mode: u32) -> FileContent {
        FileContent { data: text.as_bytes().to_vec(), mode }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_swap_the_data_link_and_drop_removed_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let volume = dir.path().join("vol");
        let first = Payload::from([
            ("a".into(), FileContent::text("1", 0o644)),
            ("sub/b".into(), FileContent::text("2", 0o600)),
        ]);
        assert_eq!(write_atomically(&volume, &first), Ok(true));
        assert_eq!(std::fs::read_to_string(volume.join("a")).expect("a"), "1");
        assert_eq!(std::fs::read_to_string(volume.join("sub/b")).expect("b"), "2");
        assert_eq!(std::fs::read_link(volume.join("a")).expect("link"), Path::new("..data/a"));
        let mode = std::fs::metadata(volume.join("sub/b")).expect("b").mode_bits();
        assert_eq!(mode, 0o600);
        let old_target = std::fs::read_link(volume.join(DATA_LINK)).expect("..data");
        // The same payload again changes nothing.
        assert_eq!(write_atomically(&volume, &first), Ok(false));
        assert_eq!(std::fs::read_link(volume.join(DATA_LINK)).expect("..data"), old_target);
        let second = Payload::from([("a".into(), FileContent::text("3", 0o644))]);
        assert_eq!(write_atomically(&volume, &second), Ok(true));
        assert_eq!(std::fs::read_to_string(volume.join("a")).expect("a"), "3");
        assert!(std::fs::symlink_metadata(volume.join("sub")).is_err(), "a removed key's entry goes");
        assert!(!volume.join(&old_target).exists(), "the old timestamped dir goes");
        let entries: Vec<String> = std::fs::read_dir(&volume)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 3, "a, ..data and one timestamped dir: {entries:?}");
    }
}
