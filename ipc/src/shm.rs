//! Shared memory: named blocks any process can attach to, and the regions that
//! hold multiproc's own cross-process objects.
//!
//! * [`SharedMemory`] is Python's `multiprocessing.shared_memory.SharedMemory`:
//!   a block of bytes with a name, created by one process and attached by name
//!   by others (related or not).
//! * [`ShmRegion`] is the backing store of locks, values, queues and rings: an
//!   automatically named segment that processes forked later inherit, and that
//!   serializes to its name so a handle passed to a pool task re-attaches; or
//!   an anonymous region that only forked children share.
//!
//! # Cleanup
//!
//! A named segment is unlinked exactly once, by its owner (the process that
//! created it): when the owner drops its last handle, or calls `unlink`.
//! A forked child that drops an inherited handle never unlinks. If the owner
//! crashes, a small tracker process started on first use (Python's
//! `resource_tracker`) unlinks what the crashed family left once every process
//! holding it is gone; and the next run sweeps regions whose creator is dead.
//! `/dev/shm` never fills with leaks.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::shm::{self as sys, Mapping};

/// Prefix of the names of [`ShmRegion`]s: `/mp-<creator pid>-<sequence>-<random>`.
const REGION_PREFIX: &str = "mp-";

/// The prefix of a pool's payload blocks (`multiproc-pool`), named
/// `mpp-<pool pid>-<maker pid>-<n>`: the next run's sweep unlinks those
/// whose pool process is dead, as it does for `mp-<pid>-…` regions.
#[doc(hidden)]
pub const PAYLOAD_BLOCK_PREFIX: &str = "mpp-";

fn check_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "shared memory name must not be empty",
        ));
    }
    if bare.len() + 1 > sys::MAX_NAME {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "shared memory name is {} bytes; the limit is {}",
                bare.len(),
                sys::MAX_NAME - 1
            ),
        ));
    }
    if bare.contains(['/', '\0', '\n']) || bare == "." || bare == ".." {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("shared memory name {name:?} may not contain '/', NUL or newline"),
        ));
    }
    Ok(format!("/{bare}"))
}

/// Prefix of the names [`SharedMemory::new`] makes (Python's is `psm_`).
const UNIQUE_PREFIX: &str = "psm_";
/// How many generated names [`SharedMemory::new`] tries.
const UNIQUE_NAME_TRIES: u32 = 64;
/// How long [`SharedMemory::open_or_create`] retries a block that vanishes
/// or is not yet sized between its two attempts.
const OPEN_OR_CREATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// A fresh name for [`SharedMemory::new`]: `/psm_<pid>_<sequence>_<random>`.
fn unique_name() -> String {
    use std::hash::BuildHasher;
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let seq = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let salt = std::collections::hash_map::RandomState::new().hash_one((pid, seq));
    format!("/{UNIQUE_PREFIX}{pid:x}_{seq:x}_{salt:016x}")
}

/// True if `e` says the block already exists.
fn already_exists(e: &Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::AlreadyExists;
        }
        source = s.source();
    }
    false
}

fn io_error(e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
        _ => ErrorKind::Io,
    };
    Error::with_source(kind, e.to_string(), e)
}

/// The state shared by all handles to one named segment in one process.
struct Named {
    name: String,
    map: Mapping,
    /// The pid that created the segment, if this process created it.
    owner: Option<u32>,
    unlinked: Mutex<bool>,
}

impl Named {
    /// Creates and tracks the segment `name` (already checked).
    fn create(name: &str, size: usize) -> Result<Named> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "shared memory size must be at least 1 byte",
            ));
        }
        // Tracked before it exists: a process killed between the two steps
        // leaves the tracker a name to remove, never a segment it does not
        // know about (unlinking a name that was never created is harmless).
        if let Err(e) = sys::track(name) {
            // Without the tracker a crash could leak the block: refuse it.
            return Err(Error::with_source(
                ErrorKind::Io,
                "cannot start the shared memory tracker",
                e,
            ));
        }
        let map = match Mapping::create_named(name, size) {
            Ok(map) => map,
            Err(e) => {
                // A name that exists already may be this process's own,
                // tracked since it made it: that registration stays.
                if e.kind() != io::ErrorKind::AlreadyExists {
                    let _ = sys::untrack(name);
                }
                return Err(io_error(e));
            }
        };
        let named = Named {
            name: name.to_owned(),
            map,
            owner: Some(std::process::id()),
            unlinked: Mutex::new(false),
        };
        Ok(named)
    }

    fn is_owner(&self) -> bool {
        self.owner == Some(std::process::id())
    }

    fn unlink(&self) -> Result<()> {
        let mut done = self.unlinked.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Ok(());
        }
        sys::unlink(&self.name).map_err(|e| {
            Error::with_source(
                ErrorKind::Io,
                format!("cannot unlink shared memory block '{}'", self.name),
                e,
            )
        })?;
        *done = true;
        let _ = sys::untrack(&self.name);
        Ok(())
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        if self.is_owner() {
            let _ = self.unlink();
        }
    }
}

/// A named block of shared memory, Python's `shared_memory.SharedMemory`.
///
/// The creating process owns the block: it is unlinked when the owner drops
/// it (or on [`unlink`](SharedMemory::unlink)). A handle inherited by a
/// forked child, or made by `attach`, never unlinks. A handle is not `Clone`:
/// reads borrow it shared and writes borrow it exclusively, so a slice from
/// [`as_slice`](SharedMemory::as_slice) cannot change under you through this
/// process (share one handle with `Arc` and it becomes read-only).
/// A `SharedMemory` serializes to its name, so it can be passed to another
/// process, which attaches on deserialization.
///
/// # Examples
///
/// ```
/// use multiproc::shm::SharedMemory;
///
/// let name = format!("doc-example-{}", std::process::id());
/// let mut block = SharedMemory::create(&name, 16)?;
/// block.as_mut_slice()[..5].copy_from_slice(b"hello");
///
/// let other = SharedMemory::attach(&name)?; // as another process would
/// assert_eq!(&other.as_slice()[..5], b"hello");
/// assert_eq!(other.size(), 16);
/// drop(other);
/// drop(block); // the owner's last handle: the block is unlinked
/// assert!(SharedMemory::attach(&name).is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// Other processes can write the block at any time. Reading a slice while
/// another process writes it gives torn, unspecified bytes (as in Python);
/// guard shared data with a cross-process lock.
pub struct SharedMemory {
    inner: Named,
}

impl SharedMemory {
    /// Creates a new block `name` of `size` zeroed bytes, owned by this process.
    ///
    /// `name` may start with `/`; it must not contain another `/`, NUL or a
    /// newline and must be at most 254 bytes.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a bad name or a zero size; `Io` (with an
    /// `AlreadyExists` source) if a block of that name exists, or if the
    /// system refuses the memory.
    pub fn create(name: &str, size: usize) -> Result<SharedMemory> {
        Ok(SharedMemory {
            inner: Named::create(&check_name(name)?, size)?,
        })
    }

    /// Creates a new block of `size` zeroed bytes under a generated unique
    /// name, owned by this process: Python's
    /// `SharedMemory(create=True, size=n)`. Read the name with
    /// [`name`](SharedMemory::name) to hand it to other processes (or send
    /// the handle itself: it serializes to its name).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::shm::SharedMemory;
    ///
    /// let mut block = SharedMemory::new(16)?;
    /// assert!(block.name().starts_with("/psm_"));
    /// block.write_at(0, b"hi")?;
    /// let other = SharedMemory::attach(block.name())?;
    /// assert_eq!(&other.as_slice()[..2], b"hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a zero size; `Io` if the system refuses the
    /// memory.
    pub fn new(size: usize) -> Result<SharedMemory> {
        // A name already taken (by chance, or on purpose by someone else) is
        // skipped: O_EXCL creation makes every attempt safe.
        let mut last = None;
        for _ in 0..UNIQUE_NAME_TRIES {
            match Named::create(&unique_name(), size) {
                Ok(inner) => return Ok(SharedMemory { inner }),
                Err(e) if already_exists(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(ErrorKind::Io, "no free shared memory name")))
    }

    /// Attaches to the block `name` if it exists, else creates it with
    /// `size` zeroed bytes; [`is_owner`](SharedMemory::is_owner) tells which
    /// happened. When several processes race, exactly one creates it and the
    /// others attach to that block.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::shm::SharedMemory;
    ///
    /// let name = format!("doc-open-or-create-{}", std::process::id());
    /// let first = SharedMemory::open_or_create(&name, 64)?;
    /// assert!(first.is_owner()); // created
    /// let second = SharedMemory::open_or_create(&name, 64)?;
    /// assert!(!second.is_owner()); // attached
    /// assert_eq!(second.size(), 64);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a bad name or a zero size; `InvalidArgument` if
    /// the existing block is smaller than `size`; `Io` if the system refuses,
    /// or if the block keeps appearing and vanishing (or stays empty, its
    /// creator stuck between creating and sizing it) for a whole second.
    ///
    /// # Caveats
    ///
    /// The size of an existing block is whatever its creator chose (at
    /// least `size`, checked).
    pub fn open_or_create(name: &str, size: usize) -> Result<SharedMemory> {
        let name = check_name(name)?;
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "shared memory size must be at least 1 byte",
            ));
        }
        let deadline = std::time::Instant::now() + OPEN_OR_CREATE_PATIENCE;
        loop {
            let err = match Named::create(&name, size) {
                Ok(inner) => return Ok(SharedMemory { inner }),
                Err(e) if already_exists(&e) => match SharedMemory::attach(&name) {
                    Ok(block) if block.size() >= size => return Ok(block),
                    Ok(block) => {
                        return Err(Error::new(
                            ErrorKind::InvalidArgument,
                            format!(
                                "shared memory block '{name}' has {} bytes, fewer than {size}",
                                block.size()
                            ),
                        ))
                    }
                    // Gone again (its owner dropped it), or not yet sized
                    // by its creator: look again.
                    Err(e) => e,
                },
                Err(e) => return Err(e),
            };
            if std::time::Instant::now() >= deadline {
                return Err(err);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Attaches to the existing block `name` (not as its owner).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a bad name; `Io` (with a `NotFound` source) if no
    /// such block exists.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        let name = check_name(name)?;
        let map = Mapping::attach_named(&name).map_err(io_error)?;
        Ok(SharedMemory {
            inner: Named {
                name,
                map,
                owner: None,
                unlinked: Mutex::new(false),
            },
        })
    }

    /// The block's name, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The block's size in bytes.
    pub fn size(&self) -> usize {
        self.inner.map.len()
    }

    /// True in the process that created the block (not in forked children).
    pub fn is_owner(&self) -> bool {
        self.inner.is_owner()
    }

    /// A copy of the block's bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size()];
        // The range is the whole block, so it is always in bounds.
        let _ = self.inner.map.read_at(0, &mut v);
        v
    }

    /// Maps all of the block into this process now, in one system call,
    /// instead of one page fault per 4 KiB page at its first touch: for a
    /// block about to be read (or, with `for_write`, written) whole. Returns
    /// false where the kernel (before Linux 5.14) does not do it; the pages
    /// then fault in as usual. Contents are unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::shm::SharedMemory;
    /// let mut block = SharedMemory::new(1 << 20)?; // unlinked when dropped
    /// block.populate(true);
    /// block.write_at(0, &[7; 1 << 20])?;
    /// assert_eq!(block.as_slice()[12345], 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn populate(&self, for_write: bool) -> bool {
        self.inner.map.populate(for_write)
    }

    /// The block's bytes, read in place (Python's `buf`). See the caveat on
    /// [`SharedMemory`] about other processes.
    pub fn as_slice(&self) -> &[u8] {
        self.inner.map.as_slice()
    }

    /// The block's bytes, to read and write in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.inner.map.as_mut_slice()
    }

    /// Copies `buf.len()` bytes at `offset` out of the block.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the range is outside the block.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        if self.inner.map.read_at(offset, buf) {
            Ok(())
        } else {
            Err(self.range_error(offset, buf.len()))
        }
    }

    /// Copies `data` into the block at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the range is outside the block.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        if self.inner.map.write_at(offset, data) {
            Ok(())
        } else {
            Err(self.range_error(offset, data.len()))
        }
    }

    fn range_error(&self, offset: usize, len: usize) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "range {offset}..{} is outside the {}-byte block",
                offset.saturating_add(len),
                self.size()
            ),
        )
    }

    /// Removes the name now (Python's `unlink`): existing mappings stay valid,
    /// new `attach`es fail. Idempotent in the owner.
    ///
    /// # Errors
    ///
    /// `Io` if the block was already removed by someone else.
    pub fn unlink(&self) -> Result<()> {
        self.inner.unlink()
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<SharedMemory, D::Error> {
        let name = String::deserialize(d)?;
        SharedMemory::attach(&name).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------

/// Named regions this process has mapped, by name: a forked child finds the
/// mapping it inherited here instead of mapping the segment a second time.
type Registry = Vec<(String, Weak<Named>)>;

/// The registry, held across a fork (see `prefork`).
pub(crate) fn registry_lock() -> impl Sized {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());
    &REGISTRY
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

enum Backing {
    Named(Arc<Named>),
    Anonymous(Arc<Mapping>),
    /// A memory file's mapping, and its descriptor (to send to others).
    File(Arc<Mapping>, std::os::fd::OwnedFd),
}

/// Shared memory holding multiproc's own cross-process objects.
///
/// Either named (the default: inherited by processes forked later, and
/// re-attached by name when a handle is deserialized in any other process) or
/// anonymous (only processes forked after creation see it; it cannot be
/// serialized). Typed access is through atomics at fixed offsets and byte
/// copies; the layout is the user's (a lock, a queue ring...).
///
/// # Examples
///
/// ```
/// use multiproc::shm::ShmRegion;
/// use std::sync::atomic::Ordering;
///
/// let region = ShmRegion::create(4096)?;
/// region.atomic_u64(0).fetch_add(5, Ordering::SeqCst);
///
/// // A handle crosses processes as its name and re-attaches.
/// let bytes = multiproc::codec::encode(&region)?;
/// let again: ShmRegion = multiproc::codec::decode(&bytes)?;
/// assert_eq!(again.atomic_u64(0).load(Ordering::SeqCst), 5);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct ShmRegion {
    backing: Arc<Backing>,
}

impl ShmRegion {
    /// Creates a named region of `len` zeroed bytes, owned by this process.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for `len == 0`; `Io` if the system refuses.
    pub fn create(len: usize) -> Result<ShmRegion> {
        if len == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "shared memory size must be at least 1 byte",
            ));
        }
        sweep_stale_regions();
        let pid = std::process::id();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let salt = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one((pid, seq)) as u32
        };
        let name = format!("/{REGION_PREFIX}{pid}-{seq}-{salt:08x}");
        let named = Arc::new(Named::create(&name, len)?);
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|(_, w)| w.strong_count() > 0);
        reg.push((named.name.clone(), Arc::downgrade(&named)));
        Ok(ShmRegion {
            backing: Arc::new(Backing::Named(named)),
        })
    }

    /// Opens the named region `name`: the mapping this process already has
    /// (inherited across fork or opened before), else a new attachment.
    ///
    /// # Errors
    ///
    /// `Io` (with a `NotFound` source) if the region no longer exists (its
    /// owner dropped it); `InvalidArgument` for a malformed name.
    pub fn open(name: &str) -> Result<ShmRegion> {
        let name = check_name(name)?;
        {
            let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
            if let Some(named) = reg
                .iter()
                .filter(|(n, _)| *n == name)
                .find_map(|(_, w)| w.upgrade())
            {
                return Ok(ShmRegion {
                    backing: Arc::new(Backing::Named(named)),
                });
            }
        }
        let named = Arc::new(SharedMemory::attach(&name)?.inner);
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|(_, w)| w.strong_count() > 0);
        reg.push((named.name.clone(), Arc::downgrade(&named)));
        Ok(ShmRegion {
            backing: Arc::new(Backing::Named(named)),
        })
    }

    /// Creates an anonymous region of `len` zeroed bytes, shared with every
    /// process forked after this call; it cannot be serialized.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for `len == 0`; `Io` if the system refuses.
    pub fn anonymous(len: usize) -> Result<ShmRegion> {
        let map = Mapping::anonymous(len).map_err(io_error)?;
        Ok(ShmRegion {
            backing: Arc::new(Backing::Anonymous(Arc::new(map))),
        })
    }

    /// Creates a region of `len` zeroed bytes in an unnamed memory file
    /// (`memfd_create`): shared with every process forked after this call,
    /// and with any process its descriptor ([`fd`](ShmRegion::fd)) is sent
    /// to, which maps it with [`from_fd`](ShmRegion::from_fd).
    ///
    /// Unlike a named region it has no name in `/dev/shm` (nothing can be
    /// left behind there, even by a killed process), it is not limited by
    /// the size of `/dev/shm`, and its pages are allocated as they are first
    /// touched instead of up front. It cannot be serialized.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::shm::ShmRegion;
    /// use std::sync::atomic::Ordering;
    ///
    /// let region = ShmRegion::memfd(1 << 20)?;
    /// region.atomic_u64(64).store(7, Ordering::SeqCst);
    /// let fd = region.fd().expect("a memory file").try_clone_to_owned()?;
    /// let again = ShmRegion::from_fd(fd)?; // as another process would
    /// assert_eq!(again.atomic_u64(64).load(Ordering::SeqCst), 7);
    /// assert!(region.name().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for `len == 0`; `Io` if the system refuses.
    pub fn memfd(len: usize) -> Result<ShmRegion> {
        if len == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "shared memory size must be at least 1 byte",
            ));
        }
        let (map, fd) = Mapping::memfd(len).map_err(io_error)?;
        Ok(ShmRegion {
            backing: Arc::new(Backing::File(Arc::new(map), fd)),
        })
    }

    /// Maps the region whose memory file descriptor is `fd` (sent by the
    /// process that made it with [`memfd`](ShmRegion::memfd)).
    ///
    /// # Errors
    ///
    /// `Io` if `fd` cannot be mapped (not a memory file, or empty).
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<ShmRegion> {
        let map = Mapping::from_fd(&fd).map_err(io_error)?;
        Ok(ShmRegion {
            backing: Arc::new(Backing::File(Arc::new(map), fd)),
        })
    }

    /// The descriptor of a region made by [`memfd`](ShmRegion::memfd) (or
    /// mapped by [`from_fd`](ShmRegion::from_fd)); `None` for the others.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match &*self.backing {
            Backing::File(_, fd) => Some(fd.as_fd()),
            _ => None,
        }
    }

    #[inline]
    fn map(&self) -> &Mapping {
        match &*self.backing {
            Backing::Named(n) => &n.map,
            Backing::Anonymous(m) | Backing::File(m, _) => m,
        }
    }

    /// The region's name, or `None` if it has none (anonymous, or in a
    /// memory file).
    pub fn name(&self) -> Option<&str> {
        match &*self.backing {
            Backing::Named(n) => Some(&n.name),
            Backing::Anonymous(_) | Backing::File(..) => None,
        }
    }

    /// The region's size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Always false: regions have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if both handles refer to the same mapping in this process.
    pub fn same_region(&self, other: &ShmRegion) -> bool {
        self.map().addr() == other.map().addr()
    }

    #[inline]
    fn view_at<T: sys::ShmSafe>(&self, offset: usize) -> &T {
        match self.map().view::<T>(offset) {
            Some(v) => v,
            None => layout_bug(offset, self.len()),
        }
    }

    /// The `AtomicU32` at `offset`.
    ///
    /// # Panics
    ///
    /// If `offset` is misaligned or out of bounds: layouts are fixed by the
    /// code that creates a region, so this is a programming error.
    #[inline]
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.view_at(offset)
    }

    /// The `AtomicU64` at `offset`.
    ///
    /// # Panics
    ///
    /// As [`atomic_u32`](ShmRegion::atomic_u32).
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.view_at(offset)
    }

    /// The `AtomicUsize` at `offset`.
    ///
    /// # Panics
    ///
    /// As [`atomic_u32`](ShmRegion::atomic_u32).
    #[inline]
    pub fn atomic_usize(&self, offset: usize) -> &AtomicUsize {
        self.view_at(offset)
    }

    /// A view of a shared-memory-safe type at `offset` (crate-internal types
    /// such as process-shared mutexes), or `None` if it does not fit.
    #[allow(private_bounds, dead_code)]
    pub(crate) fn view<T: sys::ShmSafe>(&self, offset: usize) -> Option<&T> {
        self.map().view(offset)
    }

    /// Copies bytes at `offset` into `dst`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the range is outside the region.
    #[inline]
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        if self.map().read_at(offset, dst) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("range at {offset} is outside the region"),
            ))
        }
    }

    /// Copies `src` into the region at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the range is outside the region.
    #[inline]
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
        if self.map().write_at(offset, src) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("range at {offset} is outside the region"),
            ))
        }
    }
}

impl fmt::Debug for ShmRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmRegion")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish()
    }
}

impl Serialize for ShmRegion {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => Err(serde::ser::Error::custom(
                "an unnamed shared memory region (anonymous, or in a memory file) can only be \
                 inherited across fork or mapped from its descriptor, not sent by name",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ShmRegion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ShmRegion, D::Error> {
        let name = String::deserialize(d)?;
        if !name.starts_with(&format!("/{REGION_PREFIX}")) {
            return Err(serde::de::Error::custom(format!(
                "{name:?} is not a multiproc shared memory region"
            )));
        }
        ShmRegion::open(&name).map_err(serde::de::Error::custom)
    }
}

/// Unlinks `/dev/shm/mp-<pid>-*` regions whose creating process is dead,
/// and `/dev/shm/mpp-<pid>-*` payload blocks whose pool process is dead,
/// once per process: the "next run" half of crash cleanup. The first caller
/// sweeps and the others do not wait for it (a `OnceLock` here would leave
/// a process forked mid-sweep waiting for ever).
fn sweep_stale_regions() {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::Relaxed) {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(REGION_PREFIX)
            .or_else(|| name.strip_prefix(PAYLOAD_BLOCK_PREFIX))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !sys::pid_alive(pid) {
            let _ = sys::unlink(&format!("/{name}"));
        }
    }
}

/// The panic of [`ShmRegion::view_at`], out of line: the accessors it
/// serves are inlined into the library's hottest loops.
#[cold]
#[inline(never)]
fn layout_bug(offset: usize, len: usize) -> ! {
    panic!(
        "offset {offset} is out of bounds or misaligned for a {len}-byte region; \
         region layouts are fixed by the library, so this is a bug in multiproc"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident kilobytes of the mapping that holds `addr`.
    fn rss_kb(addr: usize) -> Option<u64> {
        crate::smaps::kb_at(addr, "Rss:")
    }

    #[test]
    fn populate_maps_every_page_at_once_and_changes_no_byte() {
        const LEN: usize = 1 << 20;
        let mut block = SharedMemory::new(LEN).unwrap();
        block.write_at(LEN - 3, b"end").unwrap();
        let other = SharedMemory::attach(block.name()).unwrap();
        let addr = other.as_slice().as_ptr() as usize;
        assert_eq!(rss_kb(addr), Some(0), "nothing touched yet");
        if !other.populate(false) {
            // A kernel before 5.14: the advice is refused, nothing else.
            return;
        }
        assert_eq!(rss_kb(addr), Some(LEN as u64 / 1024), "every page mapped");
        assert_eq!(&other.as_slice()[LEN - 3..], b"end");
        assert!(other.as_slice()[..LEN - 3].iter().all(|&b| b == 0));
        assert!(block.populate(true));
        block.write_at(0, b"start").unwrap();
        assert_eq!(&other.as_slice()[..5], b"start");
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", "/", "a/b", "x\0y", ".."] {
            let e = SharedMemory::create(bad, 8).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        let long = "x".repeat(300);
        assert_eq!(
            SharedMemory::create(&long, 8).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let e = SharedMemory::create(&format!("zero-{}", std::process::id()), 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn duplicate_and_missing_names_are_errors() {
        let name = format!("unit-dup-{}", std::process::id());
        let a = SharedMemory::create(&name, 8).unwrap();
        let e = SharedMemory::create(&name, 8).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("already exists"), "{e}");
        a.unlink().unwrap();
        a.unlink().unwrap(); // idempotent
        let e = SharedMemory::attach(&name).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn ranges_are_checked() {
        let name = format!("unit-range-{}", std::process::id());
        let mut b = SharedMemory::create(&name, 8).unwrap();
        b.write_at(4, b"abcd").unwrap();
        assert!(b.write_at(5, b"abcd").is_err());
        let mut out = [0u8; 4];
        b.read_at(4, &mut out).unwrap();
        assert_eq!(&out, b"abcd");
        assert!(b.read_at(usize::MAX, &mut out).is_err());
        b.as_mut_slice()[0] = 7;
        assert_eq!(b.as_slice()[0], 7);
        assert_eq!(b.to_vec()[..1], [7]);
    }

    #[test]
    fn region_open_reuses_this_process_mapping() {
        let r = ShmRegion::create(64).unwrap();
        let again = ShmRegion::open(r.name().unwrap()).unwrap();
        assert!(r.same_region(&again));
        again.atomic_u32(4).store(9, Ordering::SeqCst);
        assert_eq!(r.atomic_u32(4).load(Ordering::SeqCst), 9);
        let name = r.name().unwrap().to_owned();
        drop(r);
        drop(again);
        assert!(ShmRegion::open(&name).is_err(), "owner drop must unlink");
    }

    #[test]
    fn anonymous_regions_do_not_serialize() {
        let r = ShmRegion::anonymous(64).unwrap();
        assert!(r.name().is_none());
        assert!(crate::codec::encode(&r).is_err());
        let e = crate::codec::decode::<ShmRegion>(&crate::codec::encode("/etc").unwrap());
        assert!(e.is_err());
    }

    #[test]
    fn memory_file_regions_map_from_their_descriptor_only() {
        let r = ShmRegion::memfd(3 * 4096).unwrap();
        assert_eq!(r.len(), 3 * 4096);
        assert!(r.name().is_none());
        assert!(crate::codec::encode(&r).is_err());
        let again = ShmRegion::from_fd(r.fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
        assert!(!again.same_region(&r), "a second mapping of the same file");
        again.atomic_u64(4096).store(42, Ordering::SeqCst);
        assert_eq!(r.atomic_u64(4096).load(Ordering::SeqCst), 42);
        drop(r);
        // The file lives as long as a mapping or descriptor does.
        assert_eq!(again.atomic_u64(4096).load(Ordering::SeqCst), 42);
        assert_eq!(
            ShmRegion::memfd(0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // A descriptor that is not a memory file does not map.
        let (pipe_r, _pipe_w) = crate::sys::fd::pipe().unwrap();
        assert!(ShmRegion::from_fd(pipe_r).is_err());
        assert!(ShmRegion::anonymous(64).unwrap().fd().is_none());
    }
}
