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
