//! Queues, joinable queues, dicts, lists and values on Redis, behind the
//! shared object traits of `multiproc-manager`.
//!
//! Each object is a name: the Redis key that holds it (plus `NAME:…` keys for
//! its bookkeeping). Items, keys and values are stored encoded by multiproc's
//! codec. Objects are cheap to clone and `Serialize` (as backend URL and
//! name), so they can be passed to pool tasks and other processes.

use std::time::Duration;

use multiproc_ipc::codec;
use multiproc_ipc::{Error, Result};
use redis::{Connection, RedisResult};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `Clone` and `Debug` for an object that is a backend, a key, the fields
/// named after its type (copied by `clone`, shown by `Debug`) and a type
/// marker `_t`. Written out because a derive would require every type
/// parameter to be `Clone` and `Debug` too, which a handle to remote data
/// does not need.
macro_rules! keyed_object {
    ($name:ident<$($t:ident),+> $(, $extra:ident)*) => {
        impl<$($t),+> Clone for $name<$($t),+> {
            fn clone(&self) -> Self {
                $name {
                    backend: self.backend.clone(),
                    key: self.key.clone(),
                    $($extra: self.$extra.clone(),)*
                    _t: std::marker::PhantomData,
                }
            }
        }

        impl<$($t),+> std::fmt::Debug for $name<$($t),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("key", &self.key)
                    $(.field(stringify!($extra), &self.$extra))*
                    .finish()
            }
        }
    };
}

mod dict;
mod joinable;
mod list;
mod queue;
mod value;

pub use dict::RedisDict;
pub use joinable::RedisJoinableQueue;
pub use list::RedisList;
pub use queue::RedisQueue;
pub use value::RedisValue;

pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    Ok(codec::encode(v)?)
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(codec::decode(b)?)
}

/// Seconds for a blocking command, at least one millisecond and at most one
/// second (longer waits loop, so that no reply takes long).
fn block_secs(left: Duration) -> f64 {
    left.clamp(Duration::from_millis(1), Duration::from_secs(1))
        .as_secs_f64()
}

/// A poll interval that grows from 1 ms to 20 ms.
fn backoff(round: &mut u32) -> Duration {
    *round = (*round + 1).min(20);
    Duration::from_millis(u64::from(*round))
}

/// One optimistic update of the string `key` (`field` `None`) or of the
/// field `field` of the hash `key`: `WATCH`, read, `apply` here, then
/// `MULTI`/write/`EXEC`. `Ok(None)` if another writer came between; the
/// inner error is `apply`'s.
fn try_optimistic(
    c: &mut Connection,
    key: &str,
    field: Option<&[u8]>,
    apply: impl FnOnce(Option<Vec<u8>>) -> Result<Vec<u8>>,
) -> RedisResult<std::result::Result<Option<Vec<u8>>, Error>> {
    redis::cmd("WATCH").arg(key).query::<()>(c)?;
    let old: Option<Vec<u8>> = match field {
        None => redis::cmd("GET").arg(key).query(c)?,
        Some(f) => redis::cmd("HGET").arg(key).arg(f).query(c)?,
    };
    let new = match apply(old) {
        Ok(n) => n,
        Err(e) => {
            redis::cmd("UNWATCH").query::<()>(c)?;
            return Ok(Err(e));
        }
    };
    let mut pipe = redis::pipe();
    pipe.atomic();
    match field {
        None => pipe.cmd("SET").arg(key),
        Some(f) => pipe.cmd("HSET").arg(key).arg(f),
    }
    .arg(new.as_slice())
    .ignore();
    let done: Option<()> = pipe.query(c)?;
    Ok(Ok(done.map(|()| new)))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::RedisBackend;

    /// Neither `Clone` nor `Debug`: the objects must not need either.
    #[derive(Serialize, Deserialize)]
    struct Opaque(u8);

    #[test]
    fn objects_clone_and_show_their_key_whatever_their_item_types() {
        // Opening connects to nothing: no server is needed here.
        let backend = RedisBackend::open("redis://127.0.0.1:1").unwrap();
        let list = backend.list::<Opaque>("xs").clone();
        assert_eq!(format!("{list:?}"), r#"RedisList { key: "xs" }"#);
        assert_eq!(list.key(), "xs");
        let dict = backend.dict::<Opaque, Opaque>("d").clone();
        assert_eq!(format!("{dict:?}"), r#"RedisDict { key: "d" }"#);
        let queue = backend.bounded_queue::<Opaque>("q", 3).clone();
        assert_eq!(
            format!("{queue:?}"),
            r#"RedisQueue { key: "q", maxsize: Some(3) }"#
        );
        let jq = backend.joinable_queue::<Opaque>("j").clone();
        assert_eq!(format!("{jq:?}"), r#"RedisJoinableQueue { key: "j" }"#);
    }
}
