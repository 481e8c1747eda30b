//! `/dev/shm` entries and leak checks.

use std::time::Duration;

use crate::wait_until;

/// Sorted names of the `/dev/shm` entries whose name starts with `prefix`
/// (a leading `/` of `prefix` is ignored).
pub fn shm_names(prefix: &str) -> Vec<String> {
    let bare = prefix.trim_start_matches('/');
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(bare))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Shared-memory regions created by this process (named `mp-<pid>-…`) that
/// still exist.
pub fn leftovers() -> Vec<String> {
    shm_names(&format!("mp-{}-", std::process::id()))
}

/// True if a `/dev/shm` entry called `name` (leading `/` ignored) exists.
pub fn in_dev_shm(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

/// Asserts that every `/dev/shm` entry starting with `prefix` is removed,
/// waiting up to 10 s for a remover that runs in the background.
///
/// # Panics
///
/// If entries remain after 10 s; the message names them.
pub fn assert_shm_removed(prefix: &str) {
    wait_until(Duration::from_secs(10), || shm_names(prefix).is_empty());
    let left = shm_names(prefix);
    assert!(left.is_empty(), "{left:?}");
}
