//! Task functions registered by name: no code crosses the wire.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_pool::{ApplyOptions, Pool};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::objects::{dec, enc};

/// A task's outcome: the encoded result, or the error.
pub(crate) type Outcome = std::result::Result<Vec<u8>, Error>;

/// An [`Outcome`] as stored in Redis.
type WireOutcome = std::result::Result<Vec<u8>, multiproc_ipc::WireError>;

/// Encodes an outcome for the results hash.
pub(crate) fn encode_outcome(o: &Outcome) -> Vec<u8> {
    let wire: WireOutcome = match o {
        Ok(b) => Ok(b.clone()),
        Err(e) => Err(e.to_wire()),
    };
    // A Vec and plain fields always encode.
    enc(&wire).unwrap_or_default()
}

/// Decodes a stored outcome.
pub(crate) fn decode_outcome_bytes(b: &[u8]) -> Result<Outcome> {
    let wire: WireOutcome = dec(b)?;
    Ok(wire.map_err(Error::from))
}

/// What a worker hears back from its local pool: (slot, outcome).
pub(crate) type Done = (u64, Outcome);

/// A registered task function `fn(A) -> R`, known by its name.
///
/// The master uses it to submit (`RedisPool::apply_async(task, arg)`), with
/// the argument and result types checked at compile time; the worker's
/// [`Registry`] maps the name back to the function.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{Registry, TaskFn};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let mut registry = Registry::new();
/// let task: TaskFn<u64, u64> = registry.register("square", square);
/// assert_eq!(task.name(), "square");
/// // A master that does not link the function names it instead:
/// assert_eq!(TaskFn::<u64, u64>::named("square"), task);
/// ```
pub struct TaskFn<A, R> {
    name: Arc<str>,
    _t: PhantomData<fn(A) -> R>,
}

impl<A, R> TaskFn<A, R> {
    /// The task registered as `name` on the workers; the types must match
    /// the registered function's (a mismatch fails each task with a
    /// `Serialization` error).
    pub fn named(name: &str) -> TaskFn<A, R> {
        TaskFn {
            name: Arc::from(name),
            _t: PhantomData,
        }
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<A, R> Clone for TaskFn<A, R> {
    fn clone(&self) -> Self {
        TaskFn {
            name: Arc::clone(&self.name),
            _t: PhantomData,
        }
    }
}

impl<A, R> PartialEq for TaskFn<A, R> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl<A, R> fmt::Debug for TaskFn<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskFn({})", self.name)
    }
}

/// Runs one registered function in a local pool.
trait Runner: Send + Sync {
    fn start(
        &self,
        pool: &Pool,
        args: &[u8],
        timeout: Option<Duration>,
        slot: u64,
        done: Sender<Done>,
    ) -> Result<()>;
}

struct Typed<A, R> {
    f: fn(A) -> R,
}

impl<A, R> Runner for Typed<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn start(
        &self,
        pool: &Pool,
        args: &[u8],
        timeout: Option<Duration>,
        slot: u64,
        done: Sender<Done>,
    ) -> Result<()> {
        let arg: A = dec(args)?;
        let on_err = done.clone();
        let mut options = ApplyOptions::new()
            .callback(move |r: &R| {
                let _ = done.send((slot, enc(r)));
            })
            .error_callback(move |e: &Error| {
                let _ = on_err.send((slot, Err(e.clone())));
            });
        if let Some(t) = timeout {
            options = options.timeout(t);
        }
        pool.apply_async_with(self.f, arg, options).map(drop)
    }
}

/// The task functions a worker can run, by name (the user's binary
/// registers the same functions on master and workers).
///
/// # Examples
///
/// ```
/// use multiproc::redis::Registry;
///
/// fn add((a, b): (i64, i64)) -> i64 { a + b }
///
/// let mut registry = Registry::new();
/// registry.register("add", add);
/// assert!(registry.contains("add"));
/// ```
#[derive(Default, Clone)]
pub struct Registry {
    map: HashMap<String, Arc<dyn Runner>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Registry").field("tasks", &names).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `f` as `name` (replacing an earlier one of that name) and
    /// returns the typed handle a master submits with.
    pub fn register<A, R>(&mut self, name: &str, f: fn(A) -> R) -> TaskFn<A, R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map.insert(name.to_owned(), Arc::new(Typed { f }));
        TaskFn::named(name)
    }

    /// True if `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Starts `name(args)` in `pool`; its outcome arrives on `done`.
    pub(crate) fn start(
        &self,
        name: &str,
        pool: &Pool,
        args: &[u8],
        timeout: Option<Duration>,
        slot: u64,
        done: Sender<Done>,
    ) -> Result<()> {
        match self.map.get(name) {
            Some(r) => r.start(pool, args, timeout, slot, done),
            None => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("no task function is registered as {name:?} on this worker"),
            )),
        }
    }
}
