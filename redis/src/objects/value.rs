//! `RedisValue`: one value on a Redis string key.

use std::marker::PhantomData;

use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_manager::SharedValue;
use redis::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn::RedisBackend;

use super::{dec, enc, try_optimistic};

/// One value in a Redis string, with an atomic [`update`](SharedValue::update)
/// (optimistic: `WATCH`, read, apply `f` here, `MULTI`/`SET`/`EXEC`, again if
/// another writer came between).
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedValue};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let v = backend.value("counter", 0i64)?;
/// assert_eq!(v.update(|x| x + 1)?, 1);
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
///
/// # Caveats
///
/// `f` may run several times under contention (only one result is
/// stored): keep it pure.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisValue<T> {
    backend: RedisBackend,
    key: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

keyed_object!(RedisValue<T>);

impl<T: Serialize + DeserializeOwned> RedisValue<T> {
    /// The value under `key`, set to `initial` unless it exists.
    pub(crate) fn new(backend: RedisBackend, key: &str, initial: &T) -> Result<Self> {
        let v = enc(initial)?;
        backend.run("SET NX", |c| {
            redis::cmd("SET")
                .arg(key)
                .arg(v.as_slice())
                .arg("NX")
                .query::<Value>(c)
        })?;
        Ok(RedisValue {
            backend,
            key: key.to_owned(),
            _t: PhantomData,
        })
    }

    /// The Redis key of the value.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn missing(&self) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("no value under key {}", self.key),
        )
    }
}

impl<T: Serialize + DeserializeOwned> SharedValue<T> for RedisValue<T> {
    fn get(&self) -> Result<T> {
        let v: Option<Vec<u8>> = self
            .backend
            .run("GET", |c| redis::cmd("GET").arg(&self.key).query(c))?;
        dec(&v.ok_or_else(|| self.missing())?)
    }
    fn set(&self, value: &T) -> Result<()> {
        let v = enc(value)?;
        self.backend.run("SET", |c| {
            redis::cmd("SET")
                .arg(&self.key)
                .arg(v.as_slice())
                .query::<()>(c)
        })
    }
    fn update(&self, f: fn(T) -> T) -> Result<T> {
        loop {
            match self.backend.run_once("update", |c| {
                try_optimistic(c, &self.key, None, |old| match old {
                    Some(b) => enc(&f(dec::<T>(&b)?)),
                    None => Err(self.missing()),
                })
            })?? {
                Some(bytes) => return dec(&bytes),
                None => std::thread::yield_now(),
            }
        }
    }
}
