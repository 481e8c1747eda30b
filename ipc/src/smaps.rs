//! Test support: fields of this process's `/proc/self/smaps`.

/// A `kB` field (`"Rss:"`, `"AnonHugePages:"`, ...) of the mapping that
/// holds `addr`.
pub(crate) fn kb_at(addr: usize, field: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        // A mapping's header starts with its range, `start-end`.
        let range = line
            .split_once(' ')
            .and_then(|(r, _)| r.split_once('-'))
            .map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)));
        if let Some((Ok(a), Ok(b))) = range {
            inside = (a..b).contains(&addr);
        } else if inside {
            if let Some(v) = line.strip_prefix(field) {
                return v.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}
