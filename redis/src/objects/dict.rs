//! `RedisDict`: a dict on a Redis hash.

use std::borrow::Borrow;
use std::marker::PhantomData;

use multiproc_ipc::Result;
use multiproc_manager::SharedDict;
use redis::Script;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn::RedisBackend;

use super::{dec, enc, try_optimistic};

/// A dictionary in a Redis hash; keys and values encoded by the codec.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedDict};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let d = backend.dict::<String, i64>("scores");
/// d.insert(&"ann".to_string(), &3)?;
/// assert_eq!(d.get(&"ann".to_string())?, Some(3));
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisDict<K, V> {
    backend: RedisBackend,
    key: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> (K, V)>,
}

keyed_object!(RedisDict<K, V>);

/// Sets ARGV[1] to ARGV[2] unless present; returns the value there now.
static HASH_SETDEFAULT: &str = r"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
";

static HASH_SWAP: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else redis.call('HDEL', KEYS[1], ARGV[1]) end
return old
";

impl<K, V> RedisDict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    pub(crate) fn new(backend: RedisBackend, key: &str) -> Self {
        RedisDict {
            backend,
            key: key.to_owned(),
            _t: PhantomData,
        }
    }

    /// The Redis key of the hash.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn swap<Q: ?Sized + Serialize>(&self, key: &Q, value: Option<&V>) -> Result<Option<V>> {
        let k = enc(key)?;
        let v = value.map(enc).transpose()?;
        let script = Script::new(HASH_SWAP);
        let old: Option<Vec<u8>> = self.backend.run_once("dict write", |c| {
            let mut inv = script.key(&self.key);
            inv.arg(k.as_slice());
            if let Some(v) = &v {
                inv.arg(v.as_slice());
            }
            inv.invoke(c)
        })?;
        old.map(|b| dec(&b)).transpose()
    }
}

impl<K, V> SharedDict<K, V> for RedisDict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        let k = enc(key)?;
        let v: Option<Vec<u8>> = self.backend.run("HGET", |c| {
            redis::cmd("HGET").arg(&self.key).arg(k.as_slice()).query(c)
        })?;
        v.map(|b| dec(&b)).transpose()
    }
    fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.swap(key, Some(value))
    }
    fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        self.swap(key, None)
    }
    fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        let k = enc(key)?;
        self.backend.run("HEXISTS", |c| {
            redis::cmd("HEXISTS")
                .arg(&self.key)
                .arg(k.as_slice())
                .query(c)
        })
    }
    /// One script: `HSETNX`, then `HGET`.
    fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let k = enc(key)?;
        let v = enc(default)?;
        let script = Script::new(HASH_SETDEFAULT);
        let now: Vec<u8> = self.backend.run("setdefault", |c| {
            script
                .key(&self.key)
                .arg(k.as_slice())
                .arg(v.as_slice())
                .invoke(c)
        })?;
        dec(&now)
    }
    /// Optimistic: `WATCH` the hash, `HGET`, apply `f` here,
    /// `MULTI`/`HSET`/`EXEC`, again if another writer came between.
    fn update_with<Q>(&self, key: &Q, f: fn(Option<V>) -> V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
        V: 'static,
    {
        let field = enc(key)?;
        loop {
            let done = self.backend.run_once("update_with", |c| {
                try_optimistic(c, &self.key, Some(&field), |old| {
                    enc(&f(old.map(|b| dec::<V>(&b)).transpose()?))
                })
            })??;
            match done {
                Some(bytes) => return dec(&bytes),
                None => std::thread::yield_now(),
            }
        }
    }
    /// One `HSET` for all pairs.
    fn update<I: IntoIterator<Item = (K, V)>>(&self, pairs: I) -> Result<()> {
        let mut fields = Vec::new();
        for (k, v) in pairs {
            fields.push(enc(&k)?);
            fields.push(enc(&v)?);
        }
        if fields.is_empty() {
            return Ok(());
        }
        self.backend
            .run("HSET", |c| {
                redis::cmd("HSET")
                    .arg(&self.key)
                    .arg(&fields)
                    .query::<i64>(c)
            })
            .map(drop)
    }
    fn len(&self) -> Result<usize> {
        self.backend
            .run("HLEN", |c| redis::cmd("HLEN").arg(&self.key).query(c))
    }
    fn keys(&self) -> Result<Vec<K>> {
        let ks: Vec<Vec<u8>> = self
            .backend
            .run("HKEYS", |c| redis::cmd("HKEYS").arg(&self.key).query(c))?;
        ks.iter().map(|b| dec(b)).collect()
    }
    fn values(&self) -> Result<Vec<V>> {
        let vs: Vec<Vec<u8>> = self
            .backend
            .run("HVALS", |c| redis::cmd("HVALS").arg(&self.key).query(c))?;
        vs.iter().map(|b| dec(b)).collect()
    }
    fn items(&self) -> Result<Vec<(K, V)>> {
        let kv: Vec<(Vec<u8>, Vec<u8>)> = self
            .backend
            .run("HGETALL", |c| redis::cmd("HGETALL").arg(&self.key).query(c))?;
        kv.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect()
    }
    fn clear(&self) -> Result<()> {
        self.backend
            .run("DEL", |c| redis::cmd("DEL").arg(&self.key).query::<i64>(c))
            .map(drop)
    }
}
