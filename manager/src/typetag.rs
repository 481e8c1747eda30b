//! Type fingerprints: which Rust types a typed object was made (or first
//! used) with, so that a proxy of other types is refused rather than left to
//! decode the bytes of one type as another (an `i64` -5 read as a `u64`).
//!
//! A fingerprint is a 64-bit FNV-1a hash of the type's name as
//! [`std::any::type_name`] spells it, with every module path removed
//! (`alloc::vec::Vec<app::Job>` becomes `Vec<Job>`), so that two programs
//! that define the same type in differently named crates (a task master and
//! a task worker) agree. See the "Type fingerprints" section of the crate
//! docs for what it does and does not catch.

use serde::{Deserialize, Serialize};

/// The fingerprint of a proxy's types, computed on this side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TypeTag {
    /// The hash of the short name.
    pub(crate) fp: u64,
    /// `std::any::type_name` of the types, unshortened.
    raw: &'static str,
}

impl TypeTag {
    /// The tag of `T` (a tuple `(K, V)` for a dict).
    pub(crate) fn of<T: ?Sized>() -> TypeTag {
        let raw = std::any::type_name::<T>();
        TypeTag {
            fp: fnv1a(short_name(raw).as_bytes()),
            raw,
        }
    }

    /// The short name (module paths removed).
    pub(crate) fn name(&self) -> String {
        short_name(self.raw)
    }

    /// What a client sends when it makes or looks up an object.
    pub(crate) fn desc(&self) -> TypeDesc {
        TypeDesc {
            fp: self.fp,
            name: self.name(),
        }
    }
}

/// A fingerprint and the short name it hashes, as sent to and kept by the
/// manager (which never needs the types themselves).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TypeDesc {
    pub(crate) fp: u64,
    pub(crate) name: String,
}

/// `name` with every `path::` prefix removed.
pub(crate) fn short_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        out.push(c);
        if out.ends_with("::") {
            out.truncate(out.len() - 2);
            while out.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                out.pop();
            }
        }
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    mod app {
        pub struct Job;
    }
    mod other {
        pub struct Job;
    }

    #[test]
    fn names_lose_their_paths() {
        assert_eq!(
            short_name(std::any::type_name::<(String, Vec<app::Job>, Option<&str>)>()),
            "(String, Vec<Job>, Option<&str>)"
        );
        assert_eq!(short_name("[u8; 4]"), "[u8; 4]");
        assert_eq!(
            short_name("alloc::boxed::Box<dyn core::ops::function::Fn(i64) -> u64>"),
            "Box<dyn Fn(i64) -> u64>"
        );
    }

    #[test]
    fn fingerprints_tell_types_apart_but_not_modules() {
        assert_ne!(TypeTag::of::<i64>().fp, TypeTag::of::<u64>().fp);
        assert_ne!(
            TypeTag::of::<(String, i64)>().fp,
            TypeTag::of::<(String, u64)>().fp
        );
        assert_ne!(TypeTag::of::<String>().fp, TypeTag::of::<Vec<u8>>().fp);
        assert_eq!(TypeTag::of::<app::Job>().fp, TypeTag::of::<other::Job>().fp);
        assert_eq!(TypeTag::of::<Vec<u8>>().name(), "Vec<u8>");
    }
}
