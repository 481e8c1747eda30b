//! Locks, semaphores and events in a manager, and [`ProxyGuard`].

use super::*;

/// A lock in a manager (Python's `manager.Lock()`). Any client may release
/// it; if the client holding it disconnects or dies, the manager releases it.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _guard = lock.lock()?;
///     assert!(lock.try_lock()?.is_none());
/// }
/// assert!(lock.try_lock()?.is_some());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LockProxy {
    obj: ObjRef,
}

proxy_common!(LockProxy);

/// Releases a manager lock (or rlock) when dropped.
///
/// The release goes through the connection the lock was taken through. If
/// that connection was lost meanwhile, the manager has already released the
/// lock (it does so for every client that disconnects), and dropping the
/// guard sends nothing: a release through a new connection could free a
/// lock that another client has taken since.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    obj: &'a ObjRef,
    /// The connection the lock was taken through.
    serial: u64,
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyGuard({:?})", self.obj)
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = lock_release(self.obj, Some(self.serial));
    }
}

/// A semaphore acquire.
fn acquire(obj: &ObjRef, b: Block) -> Result<bool> {
    obj.boolean(Op::Acquire(b), "acquire")
}

/// A lock or rlock acquire: the serial of the connection that took it, or
/// `None` if it was not taken.
fn lock_acquire(obj: &ObjRef, b: Block) -> Result<Option<u64>> {
    match client::acquire_lock(&obj.ep, &Request::Op(obj.id, Op::Acquire(b)))? {
        (Response::Bool(true), serial) => Ok(Some(serial)),
        (Response::Bool(false), _) => Ok(None),
        _ => Err(unexpected("acquire")),
    }
}

/// A lock or rlock release, through the connection `through` if given.
fn lock_release(obj: &ObjRef, through: Option<u64>) -> Result<()> {
    match client::release_lock(&obj.ep, &Request::Op(obj.id, Op::Release), through)? {
        Response::Unit => Ok(()),
        _ => Err(unexpected("release")),
    }
}

/// Acquires with `b` and wraps a success in a guard.
fn guard(obj: &ObjRef, b: Block) -> Result<Option<ProxyGuard<'_>>> {
    Ok(lock_acquire(obj, b)?.map(|serial| ProxyGuard { obj, serial }))
}

/// The guard methods `lock`, `try_lock`, `lock_timeout` and `is_locked`,
/// the same on [`LockProxy`] and [`RLockProxy`]; only the first two
/// summaries differ.
macro_rules! lock_methods {
    ($name:ident, lock: $lock_doc:literal, try_lock: $try_doc:literal) => {
        #[doc = $lock_doc]
        ///
        /// # Errors
        ///
        /// `Closed`/`Io` if the manager is gone.
        pub fn lock(&self) -> Result<ProxyGuard<'_>> {
            guard(&self.obj, Block::Forever)?.ok_or_else(|| unexpected("lock"))
        }

        #[doc = $try_doc]
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`lock`](", stringify!($name), "::lock).")]
        pub fn try_lock(&self) -> Result<Option<ProxyGuard<'_>>> {
            guard(&self.obj, Block::No)
        }

        /// Waits at most `timeout` for the lock.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`lock`](", stringify!($name), "::lock).")]
        pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
            guard(&self.obj, Block::For(timeout))
        }

        /// True while someone holds the lock.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`lock`](", stringify!($name), "::lock).")]
        pub fn is_locked(&self) -> Result<bool> {
            self.obj.boolean(Op::Locked, "is_locked")
        }
    };
}

impl LockProxy {
    lock_methods!(
        LockProxy,
        lock: "Waits for the lock and returns a guard that releases it.",
        try_lock: "Takes the lock if it is free now."
    );

    /// Python's `acquire()` without a guard: pair it with
    /// [`release`](LockProxy::release).
    ///
    /// # Errors
    ///
    /// As [`lock`](LockProxy::lock).
    pub fn acquire(&self) -> Result<()> {
        lock_acquire(&self.obj, Block::Forever).map(drop)
    }

    /// Releases the lock.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if it is not locked.
    pub fn release(&self) -> Result<()> {
        lock_release(&self.obj, None)
    }
}

/// A reentrant lock in a manager (Python's `manager.RLock()`): the
/// connection that holds it may take it again; only it may release it.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let r = manager.rlock()?;
/// let a = r.lock()?;
/// let b = r.lock()?; // same holder: no deadlock
/// drop((b, a));
/// assert!(!r.is_locked()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RLockProxy {
    obj: ObjRef,
}

proxy_common!(RLockProxy);

impl RLockProxy {
    lock_methods!(
        RLockProxy,
        lock: "Waits for the lock (or takes it again) and returns a guard.",
        try_lock: "Takes the lock if it is free (or ours) now."
    );
}

/// A semaphore in a manager (Python's `manager.Semaphore(n)` and
/// `BoundedSemaphore(n)`).
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let s = manager.semaphore(1)?;
/// s.acquire()?;
/// assert!(!s.try_acquire()?);
/// s.release()?;
/// assert_eq!(s.value()?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SemaphoreProxy {
    obj: ObjRef,
}

proxy_common!(SemaphoreProxy);

impl SemaphoreProxy {
    /// Waits until the count is positive and decrements it.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn acquire(&self) -> Result<()> {
        acquire(&self.obj, Block::Forever).map(drop)
    }

    /// Decrements the count if it is positive now; returns whether it did.
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    pub fn try_acquire(&self) -> Result<bool> {
        acquire(&self.obj, Block::No)
    }

    /// Waits at most `timeout`; returns whether it decremented the count.
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        acquire(&self.obj, Block::For(timeout))
    }

    /// Increments the count.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if a bounded semaphore would exceed its bound.
    pub fn release(&self) -> Result<()> {
        self.obj.unit(Op::Release, "release")
    }

    /// The current count.
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    pub fn value(&self) -> Result<u64> {
        Ok(self.obj.len("value")? as u64)
    }
}

/// An event in a manager (Python's `manager.Event()`).
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let e = manager.event()?;
/// assert!(!e.wait_timeout(Duration::from_millis(10))?);
/// e.set()?;
/// assert!(e.is_set()?);
/// e.wait()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EventProxy {
    obj: ObjRef,
}

proxy_common!(EventProxy);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn set(&self) -> Result<()> {
        self.obj.unit(Op::EventSet, "set")
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn clear(&self) -> Result<()> {
        self.obj.unit(Op::EventClear, "clear")
    }

    /// The flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn is_set(&self) -> Result<bool> {
        self.obj.boolean(Op::EventIsSet, "is_set")
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn wait(&self) -> Result<()> {
        self.obj
            .boolean(Op::EventWait(Block::Forever), "wait")
            .map(drop)
    }

    /// Waits at most `timeout`; returns the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.obj.boolean(Op::EventWait(Block::For(timeout)), "wait")
    }
}
