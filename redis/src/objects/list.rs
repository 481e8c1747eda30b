//! `RedisList`: a list on a Redis list.

use std::marker::PhantomData;

use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_manager::SharedList;
use redis::{RedisResult, Script};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn::RedisBackend;

use super::{dec, enc};

/// A list in a Redis list; negative indices count from the end.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedList};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let l = backend.list::<u32>("xs");
/// l.extend([1, 2, 3])?;
/// assert_eq!(l.get(-1)?, 3);
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisList<T> {
    backend: RedisBackend,
    key: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

keyed_object!(RedisList<T>);

/// Removes the item at ARGV[1] (a list index) and returns it.
static LIST_POP_AT: &str = r"
local v = redis.call('LINDEX', KEYS[1], ARGV[1])
if not v then return false end
local mark = '__multiproc_removed__' .. ARGV[2]
redis.call('LSET', KEYS[1], ARGV[1], mark)
redis.call('LREM', KEYS[1], 1, mark)
return v
";

/// Inserts ARGV[2] before index ARGV[1], clamped as Python's `list.insert`:
/// the items from the index on are moved out and pushed back after it.
static LIST_INSERT: &str = r"
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = math.max(i + n, 0) end
if i >= n then return redis.call('RPUSH', KEYS[1], ARGV[2]) end
if i == 0 then return redis.call('LPUSH', KEYS[1], ARGV[2]) end
local tail = redis.call('LRANGE', KEYS[1], i, -1)
redis.call('LTRIM', KEYS[1], 0, i - 1)
redis.call('RPUSH', KEYS[1], ARGV[2])
for j = 1, #tail, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(tail, j, math.min(j + 999, #tail)))
end
return n + 1
";

fn out_of_range(index: i64) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("list index {index} out of range"),
    )
}

impl<T: Serialize + DeserializeOwned> RedisList<T> {
    pub(crate) fn new(backend: RedisBackend, key: &str) -> Self {
        RedisList {
            backend,
            key: key.to_owned(),
            _t: PhantomData,
        }
    }

    /// The Redis key of the list.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn push_encoded(&self, bytes: Vec<Vec<u8>>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.backend
            .run_once("RPUSH", |c| {
                redis::cmd("RPUSH")
                    .arg(&self.key)
                    .arg(&bytes)
                    .query::<i64>(c)
            })
            .map(drop)
    }
}

impl<T: Serialize + DeserializeOwned> SharedList<T> for RedisList<T> {
    fn push(&self, value: &T) -> Result<()> {
        self.push_encoded(vec![enc(value)?])
    }
    /// One `RPUSH` for all items.
    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let bytes = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.push_encoded(bytes)
    }

    fn get(&self, index: i64) -> Result<T> {
        let v: Option<Vec<u8>> = self.backend.run("LINDEX", |c| {
            redis::cmd("LINDEX").arg(&self.key).arg(index).query(c)
        })?;
        dec(&v.ok_or_else(|| out_of_range(index))?)
    }
    fn set(&self, index: i64, value: &T) -> Result<()> {
        let v = enc(value)?;
        let r: RedisResult<()> = self.backend.run_once("LSET", |c| {
            Ok(redis::cmd("LSET")
                .arg(&self.key)
                .arg(index)
                .arg(v.as_slice())
                .query::<()>(c))
        })?;
        // The server refuses an index out of range (or a missing list).
        r.map_err(|_| out_of_range(index))
    }
    fn pop(&self, index: Option<i64>) -> Result<T> {
        let v: Option<Vec<u8>> = match index {
            None | Some(-1) => self
                .backend
                .run_once("RPOP", |c| redis::cmd("RPOP").arg(&self.key).query(c))?,
            Some(i) => {
                let script = Script::new(LIST_POP_AT);
                let mark = crate::conn::random_hex(8);
                self.backend
                    .run_once("pop", |c| script.key(&self.key).arg(i).arg(&mark).invoke(c))?
            }
        };
        match v {
            Some(b) => dec(&b),
            None if self.len()? == 0 => Err(Error::new(
                ErrorKind::Empty,
                format!("pop from empty list {}", self.key),
            )),
            None => Err(out_of_range(index.unwrap_or(-1))),
        }
    }
    /// One script; it moves the items after `index` (O(n) on the server).
    fn insert(&self, index: i64, value: &T) -> Result<()> {
        let v = enc(value)?;
        let script = Script::new(LIST_INSERT);
        self.backend
            .run_once("insert", |c| {
                script
                    .key(&self.key)
                    .arg(index)
                    .arg(v.as_slice())
                    .invoke::<i64>(c)
            })
            .map(drop)
    }
    /// `LREM key 1 value`.
    fn remove(&self, value: &T) -> Result<bool> {
        let v = enc(value)?;
        let n: i64 = self.backend.run_once("LREM", |c| {
            redis::cmd("LREM")
                .arg(&self.key)
                .arg(1)
                .arg(v.as_slice())
                .query(c)
        })?;
        Ok(n > 0)
    }
    fn len(&self) -> Result<usize> {
        self.backend
            .run("LLEN", |c| redis::cmd("LLEN").arg(&self.key).query(c))
    }
    fn to_vec(&self) -> Result<Vec<T>> {
        let all: Vec<Vec<u8>> = self.backend.run("LRANGE", |c| {
            redis::cmd("LRANGE").arg(&self.key).arg(0).arg(-1).query(c)
        })?;
        all.iter().map(|b| dec(b)).collect()
    }
    fn clear(&self) -> Result<()> {
        self.backend
            .run("DEL", |c| redis::cmd("DEL").arg(&self.key).query::<i64>(c))
            .map(drop)
    }
}
