//! What crosses the rings: task and result records, and the monomorphized
//! trampolines that run a task in a worker.
//!
//! A task record is `[kind u8][id u64][tramp len u16][tramp][body]`. `tramp`
//! is an encoded [`FnRef`] to a trampoline `fn(TaskBody) -> Vec<u8>`
//! instantiated for the task's `A` and `R`; `body` is the encoded
//! `(FnRef<A, R>, A)` (or `PlainSlice<A>` for a chunk), inline or, when large, the
//! name of a shared-memory block holding it. The trampoline decodes the body,
//! calls the function with panics caught, and returns the encoded outcome:
//! one `Result<R, WireError>` per item, concatenated.
//!
//! A result record is `[kind u8][id u64][payload]`: the outcome bytes inline,
//! or `[seq u64][block name]` for a large outcome.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use multiproc_ipc::codec::{PlainSlice, PlainVec};
use multiproc_ipc::process::catch_remote_panic;
use multiproc_ipc::{codec, Error, ErrorKind, FnRef, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shared::Counters;

/// The type every trampoline has.
pub(crate) type Tramp = FnRef<TaskBody, Vec<u8>>;

/// A task's encoded body as the worker gets it: copied out of the ring, or
/// in place in a shared-memory block (large arguments: decoded straight
/// from the block, no intermediate copy).
pub(crate) enum TaskBody {
    Inline(Vec<u8>),
    /// A whole task record; the body starts at the offset.
    Record(Vec<u8>, usize),
    /// The first bytes of a block, and the buffer to write the outcome
    /// into: the worker's, kept from task to task, so that a large outcome
    /// (a map's chunk) is written into memory already mapped instead of
    /// fresh pages each time.
    Shared(
        std::sync::Arc<multiproc_ipc::shm::SharedMemory>,
        usize,
        Vec<u8>,
    ),
    /// As `Shared`, holding `SharedBytes`, decoded pointing into the block.
    InPlace(
        std::sync::Arc<multiproc_ipc::shm::SharedMemory>,
        usize,
        Vec<u8>,
    ),
}

impl TaskBody {
    fn bytes(&self) -> &[u8] {
        match self {
            TaskBody::Inline(v) => v,
            TaskBody::Record(v, at) => v.get(*at..).unwrap_or(&[]),
            TaskBody::Shared(shm, len, _) | TaskBody::InPlace(shm, len, _) => {
                shm.as_slice().get(..*len).unwrap_or(&[])
            }
        }
    }

    /// Decodes the body: in place for `InPlace`, else from its bytes.
    fn decode<T: DeserializeOwned>(&self) -> Result<T, codec::CodecError> {
        match self {
            TaskBody::InPlace(shm, len, _) => codec::Codec::default().decode_in_place(shm, *len),
            _ => codec::decode(self.bytes()),
        }
    }

    /// The body's buffer (for a body in a block, the worker's outcome
    /// buffer), emptied, to write an outcome into (saves an allocation per
    /// task).
    fn into_buffer(self) -> Vec<u8> {
        let (TaskBody::Inline(mut v)
        | TaskBody::Record(mut v, _)
        | TaskBody::Shared(_, _, mut v)
        | TaskBody::InPlace(_, _, mut v)) = self;
        v.clear();
        v
    }

    /// A buffer to write the outcome into while the body stays readable,
    /// emptied: a body in a block brings the worker's outcome buffer; a
    /// body in its task record takes [`RECORD_SPARE`]; an inline body gets
    /// a new one.
    fn take_spare(&mut self) -> Vec<u8> {
        let mut out = match self {
            TaskBody::Shared(_, _, out) | TaskBody::InPlace(_, _, out) => std::mem::take(out),
            TaskBody::Record(..) => RECORD_SPARE.with(Cell::take),
            TaskBody::Inline(_) => Vec::new(),
        };
        out.clear();
        out
    }

    /// Done with a body whose outcome went into [`take_spare`]'s buffer: a
    /// task record's buffer becomes [`RECORD_SPARE`].
    ///
    /// [`take_spare`]: TaskBody::take_spare
    fn recycle(self) {
        if let TaskBody::Record(rec, _) = self {
            if rec.capacity() <= RECORD_SPARE_MAX {
                RECORD_SPARE.with(|spare| spare.set(rec));
            }
        }
    }
}

thread_local! {
    /// The outcome buffer of a chunk whose body is its task record (read
    /// while the outcome is written): the record buffer of the chunk
    /// before. The worker's record buffer and this one trade places from
    /// chunk to chunk, where each chunk allocated its outcome buffer (and
    /// grew it, and freed its record's) before: a fifth of a worker's time
    /// in a `map` with `chunksize` 1.
    static RECORD_SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest buffer kept in [`RECORD_SPARE`] (a worker's record buffer
/// is at most as large).
const RECORD_SPARE_MAX: usize = crate::worker::RING_CAP;

pub(crate) const KIND_INLINE: u8 = 1;
pub(crate) const KIND_BLOCK: u8 = 2;
pub(crate) const KIND_EXIT: u8 = 3;
/// Result record of a worker whose initializer failed: the error, encoded.
pub(crate) const KIND_INIT_FAILED: u8 = 4;
/// Result record of a worker whose initializer succeeded.
pub(crate) const KIND_READY: u8 = 5;
/// A result record: the worker skipped the task, cancelled before it started.
pub(crate) const KIND_SKIPPED: u8 = 6;
/// A result record: the outcome is in the first bytes of the task's own
/// argument block, which the task had copied its argument out of (payload:
/// the outcome's length, `u64`). No block is made for the result, and the
/// parent reads it where it already has the block mapped.
pub(crate) const KIND_IN_ARG: u8 = 7;

/// Outcome of one item, as it crosses the wire.
pub(crate) type ItemOutcome<R> = Result<R, WireError>;

/// Makes task panics silent in this worker: they travel to the parent as
/// `TaskPanicked` errors instead (the panic hook still records locations).
pub(crate) fn install_panic_hook() {
    multiproc_ipc::process::quiet_caught_panics();
}

/// Calls `f(arg)` catching a panic as a `TaskPanicked` wire error.
fn call<A, R>(f: impl FnOnce(A) -> R, arg: A) -> ItemOutcome<R> {
    catch_remote_panic(|| f(arg)).map_err(|panic| Error::panicked(panic).to_wire())
}

fn ser_error(what: &str, e: impl std::fmt::Display) -> WireError {
    Error::new(ErrorKind::Serialization, format!("{what}: {e}")).to_wire()
}

/// Appends the encoding of `outcome` to `out`; an `R` that fails to encode
/// becomes a `Serialization` error for that item only.
fn push_outcome<R: Serialize>(out: &mut Vec<u8>, outcome: &ItemOutcome<R>) {
    if let Err(cause) = codec::Codec::default().encode_into(outcome, out) {
        // The error quotes the result's own `Serialize` message.
        let err: ItemOutcome<R> = Err(match outcome {
            Ok(_) => ser_error("cannot encode the task's result", cause),
            Err(e) => e.clone(),
        });
        if let Err(e) = encode_err(&err, out) {
            // An error that cannot be encoded is a bug; the parent sees an
            // empty outcome and reports a Serialization error.
            let _ = e;
        }
    }
}

fn encode_err<R: Serialize>(err: &ItemOutcome<R>, out: &mut Vec<u8>) -> Result<(), Error> {
    codec::Codec::default()
        .encode_into(err, out)
        .map(|_| ())
        .map_err(Error::from)
}

/// Trampoline for a single task: body `(FnRef<A, R>, A)`.
fn run_one<A, R>(body: TaskBody) -> Vec<u8>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let decoded = body.decode::<(FnRef<A, R>, A)>();
    let mut out = body.into_buffer();
    let outcome: ItemOutcome<R> = match decoded {
        Ok((f, arg)) => match f.get() {
            Ok(f) => call(f, arg),
            Err(e) => Err(e.to_wire()),
        },
        Err(e) => Err(ser_error("cannot decode the task's argument", e)),
    };
    push_outcome(&mut out, &outcome);
    out
}

/// Marks chunk outcome bytes holding one encoded `PlainSlice<R>` (every
/// item ok).
const CHUNK_ALL_OK: u8 = 0;
/// Marks chunk outcome bytes holding one encoded `ItemOutcome<R>` per item.
const CHUNK_PER_ITEM: u8 = 1;

/// Runs `f` over `items`: while every item succeeds the results are kept as
/// a plain `Vec<R>` and encoded in one go; from the first failure on, each
/// item's outcome is encoded separately.
fn run_items<A, R: Serialize + 'static>(items: Vec<A>, f: impl Fn(A) -> R) -> Vec<u8> {
    let mut oks: Vec<R> = Vec::with_capacity(items.len());
    let mut rest = items.into_iter();
    // One panic guard for every item up to the first panic: a guard per
    // item costs more than a tiny task. A result is pushed only once `f`
    // has returned, so `oks` holds exactly the items before the panic.
    if let Err(panic) = catch_remote_panic(|| rest.by_ref().for_each(|arg| oks.push(f(arg)))) {
        return outcome_after_panic(oks, panic, rest, f);
    }
    let mut out = vec![CHUNK_ALL_OK];
    if codec::Codec::default()
        .encode_into(&PlainSlice(&oks), &mut out)
        .is_err()
    {
        // Some result does not encode: find out which, item by item.
        out = vec![CHUNK_PER_ITEM];
        for v in oks {
            push_outcome(&mut out, &Ok(v));
        }
    }
    out
}

/// Chunk outcome bytes, item by item, for a chunk whose function panicked
/// part way: the results before the panic, the panic, then each item after
/// it (`rest`, past the one that panicked) run on its own.
fn outcome_after_panic<A, R: Serialize>(
    before: impl IntoIterator<Item = R>,
    panic: multiproc_ipc::RemotePanic,
    rest: impl Iterator<Item = A>,
    f: impl Fn(A) -> R,
) -> Vec<u8> {
    let mut out = vec![CHUNK_PER_ITEM];
    for v in before {
        push_outcome(&mut out, &Ok(v));
    }
    push_outcome::<R>(&mut out, &Err(Error::panicked(panic).to_wire()));
    for arg in rest {
        push_outcome(&mut out, &call(&f, arg));
    }
    out
}

/// Chunk outcome bytes for a failure that hit every item of the chunk.
fn chunk_error<R: Serialize>(e: WireError) -> Vec<u8> {
    let mut out = vec![CHUNK_PER_ITEM];
    let err: ItemOutcome<R> = Err(e);
    let _ = encode_err(&err, &mut out);
    out
}

/// The body of a chunk of `items` for `f`, as [`run_chunk`] decodes it
/// (numbers as one block: see [`PlainSlice`]).
pub(crate) fn chunk_body<F, A>(f: F, items: &[A]) -> (F, PlainSlice<'_, A>) {
    (f, PlainSlice(items))
}

/// Trampoline for a chunk: body `(FnRef<A, R>, PlainSlice<A>)`.
fn run_chunk<A, R>(mut body: TaskBody) -> Vec<u8>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    // Checked here too, so that a chunk of other types leaves the worker's
    // outcome buffer where it is.
    if codec::is_plain::<A>() && codec::is_plain::<R>() {
        let out = body.take_spare();
        if let Some(out) = run_plain_chunk::<A, R>(body.bytes(), out) {
            body.recycle();
            return out;
        }
    }
    match body.decode::<(FnRef<A, R>, PlainVec<A>)>() {
        Ok((f, PlainVec(items))) => match f.get() {
            Ok(f) => run_items(items, f),
            Err(e) => chunk_error::<R>(e.to_wire()),
        },
        Err(e) => chunk_error::<R>(ser_error("cannot decode the chunk's arguments", e)),
    }
}

/// [`run_chunk`] for plain numbers in and out (`u64` to `u64`, say): each
/// argument is read where it is in the body and each result written
/// straight into its place in `out`, the outcome's buffer. No vector is
/// made for the arguments or the results: for a large chunk those would
/// be fresh pages, faulted in one by one, for every chunk. The outcome
/// bytes are those of [`run_items`]: all results in one block while every
/// item succeeds, one outcome per item from a panic on. `None` if `A` or
/// `R` is not a plain number type.
fn run_plain_chunk<A: 'static, R: Serialize + 'static>(
    bytes: &[u8],
    mut out: Vec<u8>,
) -> Option<Vec<u8>> {
    let parts = codec::decode_plain_parts::<FnRef<A, R>, A>(bytes)?;
    let head = codec::PlainHead::<R>::new(&())?;
    let fail = |what: &str, e: &dyn std::fmt::Display| Some(chunk_error::<R>(ser_error(what, e)));
    let (f, items) = match parts {
        Ok(parts) => parts,
        Err(e) => return fail("cannot decode the chunk's arguments", &e),
    };
    let head = match head {
        Ok(head) => head,
        Err(e) => return fail("cannot encode the chunk's results", &e),
    };
    let f = match f.get() {
        Ok(f) => f,
        Err(e) => return Some(chunk_error::<R>(e.to_wire())),
    };
    let n = items.len();
    out.clear();
    out.push(CHUNK_ALL_OK);
    out.resize(1 + head.encoded_len(n), 0);
    // Items whose result is in `out`; one panic guard for the whole chunk,
    // as in `run_items`.
    let done = std::cell::Cell::new(0usize);
    let mut args = items.iter();
    let results = &mut args.by_ref().map(|a| {
        let r = f(a);
        done.set(done.get() + 1);
        r
    });
    match catch_remote_panic(|| head.encode_from_iter(n, results, &mut out[1..])) {
        // The block holds exactly `n` items: fewer cannot come back.
        Ok(Ok((used, got))) if got == n => {
            out.truncate(1 + used);
            Some(out)
        }
        Ok(Ok((_, got))) => fail(
            "cannot encode the chunk's results",
            &format!("{got} of {n} items"),
        ),
        Ok(Err(e)) => fail("cannot encode the chunk's results", &e),
        Err(panic) => {
            let before = head.laid_out(&out[1..], n).iter().take(done.get());
            Some(outcome_after_panic(before, panic, args, f))
        }
    }
}

/// The results of one chunk, in the parent.
pub(crate) enum ChunkResult<R> {
    /// Every item succeeded.
    All(Vec<R>),
    /// At least one item failed.
    Mixed(Vec<Result<R, Error>>),
}

impl<R> ChunkResult<R> {
    /// Every item failed with `e`.
    pub(crate) fn failed(n: usize, e: &Error) -> ChunkResult<R> {
        ChunkResult::Mixed((0..n).map(|_| Err(e.clone())).collect())
    }

    /// One result per item.
    #[cfg(test)]
    pub(crate) fn into_items(self) -> Vec<Result<R, Error>> {
        match self {
            ChunkResult::All(v) => v.into_iter().map(Ok).collect(),
            ChunkResult::Mixed(v) => v,
        }
    }
}

/// The results of a chunk of `n` items from its outcome: the worker's
/// bytes, or the error that failed the whole chunk.
pub(crate) fn chunk_result<R: DeserializeOwned + 'static>(
    n: usize,
    outcome: Result<&[u8], Error>,
) -> ChunkResult<R> {
    match outcome {
        Ok(bytes) => decode_chunk(bytes, n),
        Err(e) => ChunkResult::failed(n, &e),
    }
}

/// Decodes the outcome bytes of a chunk of `n` items that all succeeded
/// into `out` from index `at`, without an intermediate vector when the
/// results are plain numbers (placed at `at` whatever `out`'s length: see
/// [`PlainVec::place_decoded`]; other results only onto the end, `at ==
/// out.len()`). `Err` with the chunk's results when an item failed, when
/// the bytes are malformed, or when other results do not go onto the end;
/// `out` keeps its length, and its items stay as they were except, for a
/// worker that sent another number of plain results than `n`, those the
/// chunk overwrote (the map fails then).
pub(crate) fn decode_chunk_at<R: DeserializeOwned + 'static>(
    bytes: &[u8],
    n: usize,
    out: &mut Vec<R>,
    at: usize,
) -> std::result::Result<(), ChunkResult<R>> {
    if let Some((&CHUNK_ALL_OK, rest)) = bytes.split_first() {
        let before = out.len();
        match PlainVec::place_decoded(rest, out, at) {
            Some(Ok(got)) if got == n => return Ok(()),
            Some(Ok(got)) => {
                out.truncate(before);
                return Err(miscounted(got, n));
            }
            Some(Err(e)) => return Err(ChunkResult::failed(n, &Error::from(e))),
            // Not plain numbers: decoded as a vector below.
            None => {}
        }
    }
    match decode_chunk(bytes, n) {
        ChunkResult::All(v) if at == out.len() => {
            out.extend(v);
            Ok(())
        }
        other => Err(other),
    }
}

/// A chunk whose worker sent `got` results for `n` items.
fn miscounted<R>(got: usize, n: usize) -> ChunkResult<R> {
    ChunkResult::failed(
        n,
        &Error::new(
            ErrorKind::Serialization,
            format!("the worker sent {got} results for {n} items"),
        ),
    )
}

/// Decodes the outcome bytes of a chunk of `n` items.
pub(crate) fn decode_chunk<R: DeserializeOwned + 'static>(
    bytes: &[u8],
    n: usize,
) -> ChunkResult<R> {
    match bytes.split_first() {
        Some((&CHUNK_ALL_OK, rest)) => match codec::decode::<PlainVec<R>>(rest) {
            Ok(PlainVec(v)) if v.len() == n => ChunkResult::All(v),
            Ok(PlainVec(v)) => miscounted(v.len(), n),
            Err(e) => ChunkResult::failed(n, &Error::from(e)),
        },
        Some((&CHUNK_PER_ITEM, rest)) => ChunkResult::Mixed(decode_outcomes(rest, n)),
        _ => ChunkResult::failed(
            n,
            &Error::new(ErrorKind::Serialization, "malformed chunk result"),
        ),
    }
}

/// What a pool initializer may return: nothing, or a `Result` whose error
/// fails the worker's start (see
/// [`PoolBuilder::initializer`](crate::PoolBuilder::initializer)).
pub trait InitResult: 'static {
    /// `Err` with the error's text if the initializer failed.
    fn into_result(self) -> Result<(), String>;
}

impl InitResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display + 'static> InitResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Trampoline for an initializer: body `(FnRef<A, R>, A)`; the outcome is
/// one `ItemOutcome<()>`, whose error is the panic or the returned error.
fn run_init<A, R>(body: TaskBody) -> Vec<u8>
where
    A: DeserializeOwned + 'static,
    R: InitResult,
{
    let outcome: ItemOutcome<()> = match codec::decode::<(FnRef<A, R>, A)>(body.bytes()) {
        Ok((f, arg)) => match f.get() {
            Ok(f) => call(f, arg).and_then(|r| {
                r.into_result().map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("the initializer returned an error: {e}"),
                    )
                    .to_wire()
                })
            }),
            Err(e) => Err(e.to_wire()),
        },
        Err(e) => Err(ser_error("cannot decode the initializer's argument", e)),
    };
    let mut out = Vec::new();
    push_outcome(&mut out, &outcome);
    out
}

/// The trampoline for an initializer `fn(A) -> R`.
pub(crate) fn tramp_init<A, R>() -> Tramp
where
    A: DeserializeOwned + 'static,
    R: InitResult,
{
    FnRef::new(run_init::<A, R>)
}

/// The trampoline for one task of `fn(A) -> R`.
pub(crate) fn tramp_one<A, R>() -> Tramp
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    FnRef::new(run_one::<A, R>)
}

/// The trampoline for a chunk of `fn(A) -> R`.
pub(crate) fn tramp_chunk<A, R>() -> Tramp
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    FnRef::new(run_chunk::<A, R>)
}

/// Decodes the outcome of a single task (as `decode_outcomes(bytes, 1)`,
/// without the vector).
pub(crate) fn decode_one<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, Error> {
    if bytes.is_empty() {
        return Err(Error::new(
            ErrorKind::Serialization,
            "the worker sent no result for this item",
        ));
    }
    match codec::Codec::default().decode_prefix::<ItemOutcome<R>>(bytes) {
        Ok((Ok(r), _)) => Ok(r),
        Ok((Err(w), _)) => Err(Error::from(w)),
        Err(e) => Err(Error::from(e)),
    }
}

/// The value of a one-task outcome (its bytes, or the error that failed
/// the task), counted in `stats` as completed or failed.
pub(crate) fn decode_counted<R: DeserializeOwned>(
    outcome: Result<&[u8], Error>,
    stats: &Counters,
) -> Result<R, Error> {
    let res = outcome.and_then(decode_one::<R>);
    stats.count(res.is_ok());
    res
}

/// Decodes `n` item outcomes from a chunk's outcome bytes; items the bytes
/// do not cover (a worker-side decode failure) get that failure's error.
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    bytes: &[u8],
    n: usize,
) -> Vec<Result<R, Error>> {
    let c = codec::Codec::default();
    let mut out = Vec::with_capacity(n);
    let mut rest = bytes;
    let mut last_err: Option<Error> = None;
    while out.len() < n {
        if rest.is_empty() {
            let e = last_err.clone().unwrap_or_else(|| {
                Error::new(
                    ErrorKind::Serialization,
                    "the worker sent no result for this item",
                )
            });
            out.push(Err(e));
            continue;
        }
        match c.decode_prefix::<ItemOutcome<R>>(rest) {
            Ok((v, used)) => {
                rest = &rest[used..];
                match v {
                    Ok(r) => out.push(Ok(r)),
                    Err(w) => {
                        let e = Error::from(w);
                        last_err = Some(e.clone());
                        out.push(Err(e));
                    }
                }
            }
            Err(e) => {
                let e = Error::from(e);
                last_err = Some(e.clone());
                rest = &[];
                out.push(Err(e));
            }
        }
    }
    out
}

/// The fixed part of the records of tasks run by `tramp`, with kind and id
/// left zero (fill them in with [`set_head`]).
pub(crate) fn head_template(tramp: &Tramp) -> Result<Vec<u8>, Error> {
    task_head(0, 0, tramp)
}

thread_local! {
    static ONE_TEMPLATES: RefCell<HashMap<TypeId, Rc<[u8]>>> = RefCell::new(HashMap::new());
    static LAST_TEMPLATE: RefCell<Option<(TypeId, Rc<[u8]>)>> = const { RefCell::new(None) };
}

/// [`head_template`] of [`tramp_one::<A, R>`](tramp_one), cached per thread
/// (`apply_async` needs it for every task).
pub(crate) fn one_template<A, R>() -> Result<Rc<[u8]>, Error>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let key = TypeId::of::<fn(A) -> R>();
    // A caller submitting in a loop asks for the same type every time: the
    // last entry answers without hashing.
    if let Some(t) = LAST_TEMPLATE.with(|l| match &*l.borrow() {
        Some((k, t)) if *k == key => Some(Rc::clone(t)),
        _ => None,
    }) {
        return Ok(t);
    }
    let t = match ONE_TEMPLATES.with(|m| m.borrow().get(&key).cloned()) {
        Some(t) => t,
        None => {
            let t: Rc<[u8]> = head_template(&tramp_one::<A, R>())?.into();
            ONE_TEMPLATES.with(|m| m.borrow_mut().insert(key, Rc::clone(&t)));
            t
        }
    };
    LAST_TEMPLATE.with(|l| *l.borrow_mut() = Some((key, Rc::clone(&t))));
    Ok(t)
}

/// Sets the kind and id of a record built from [`head_template`].
pub(crate) fn set_head(rec: &mut [u8], kind: u8, id: u64) {
    if let Some(k) = rec.get_mut(0) {
        *k = kind;
    }
    if let Some(i) = rec.get_mut(1..9) {
        i.copy_from_slice(&id.to_le_bytes());
    }
}

/// Encodes a task record's fixed part: kind, id and trampoline.
pub(crate) fn task_head(kind: u8, id: u64, tramp: &Tramp) -> Result<Vec<u8>, Error> {
    let t = codec::encode(tramp)?;
    let mut head = Vec::with_capacity(11 + t.len());
    head.push(kind);
    head.extend_from_slice(&id.to_le_bytes());
    head.extend_from_slice(&(t.len() as u16).to_le_bytes());
    head.extend_from_slice(&t);
    Ok(head)
}

/// A task record as the worker sees it.
pub(crate) struct TaskRecord<'a> {
    pub(crate) kind: u8,
    pub(crate) id: u64,
    pub(crate) tramp: Option<Tramp>,
    pub(crate) body: &'a [u8],
}

/// The last trampoline a worker decoded, reused while its tasks keep
/// naming the same one (the same bytes decode to the same value).
#[derive(Default)]
pub(crate) struct TrampCache {
    bytes: Vec<u8>,
    tramp: Option<Tramp>,
}

impl TrampCache {
    fn get(&mut self, bytes: &[u8]) -> Option<Tramp> {
        if let Some(t) = self.tramp {
            if self.bytes == bytes {
                return Some(t);
            }
        }
        let t = codec::decode::<Tramp>(bytes).ok()?;
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        self.tramp = Some(t);
        Some(t)
    }
}

/// Parses a task record; `None` if it is malformed.
#[cfg(test)]
pub(crate) fn parse_task(rec: &[u8]) -> Option<TaskRecord<'_>> {
    parse_task_with(rec, &mut TrampCache::default())
}

/// Parses a task record, decoding its trampoline through `cache`; `None`
/// if it is malformed.
pub(crate) fn parse_task_with<'a>(rec: &'a [u8], cache: &mut TrampCache) -> Option<TaskRecord<'a>> {
    let kind = *rec.first()?;
    let id = u64::from_le_bytes(rec.get(1..9)?.try_into().ok()?);
    if kind == KIND_EXIT {
        return Some(TaskRecord {
            kind,
            id,
            tramp: None,
            body: &[],
        });
    }
    let tl = u16::from_le_bytes(rec.get(9..11)?.try_into().ok()?) as usize;
    let tramp = cache.get(rec.get(11..11 + tl)?)?;
    Some(TaskRecord {
        kind,
        id,
        tramp: Some(tramp),
        body: rec.get(11 + tl..)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    fn boom(x: u64) -> u64 {
        if x == 3 {
            panic!("three is bad");
        }
        x
    }

    #[test]
    fn chunk_outcomes_keep_per_item_errors() {
        install_panic_hook();
        let body = codec::encode(&(FnRef::new(boom), PlainSlice(&[1u64, 3, 5]))).unwrap();
        let out = tramp_chunk::<u64, u64>()
            .call(TaskBody::Inline(body))
            .unwrap();
        let got = decode_chunk::<u64>(&out, 3).into_items();
        assert_eq!(*got[0].as_ref().unwrap(), 1);
        let e = got[1].as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
        let p = e.panic_info().unwrap();
        assert_eq!(p.message, "three is bad");
        assert!(p.location.as_deref().unwrap().contains("task.rs"), "{p:?}");
        assert_eq!(*got[2].as_ref().unwrap(), 5);
        let _ = std::panic::take_hook();
    }

    #[test]
    fn an_all_ok_chunk_decodes_in_one_go() {
        let body = codec::encode(&(FnRef::new(square), PlainSlice(&[1u64, 2, 3]))).unwrap();
        let out = tramp_chunk::<u64, u64>()
            .call(TaskBody::Inline(body))
            .unwrap();
        match decode_chunk::<u64>(&out, 3) {
            ChunkResult::All(v) => assert_eq!(v, vec![1, 4, 9]),
            ChunkResult::Mixed(_) => panic!("expected the all-ok form"),
        }
        assert!(matches!(
            decode_chunk::<u64>(&out, 4),
            ChunkResult::Mixed(_)
        ));
    }

    fn halve_unless_five_divides(x: u32) -> f64 {
        if x % 5 == 0 {
            panic!("five divides {x}");
        }
        f64::from(x) / 2.0
    }

    /// Runs a chunk of `items` whose body is in a shared block (as a large
    /// chunk's is), with `spare` as the worker's outcome buffer.
    fn run_in_block(body: &[u8], spare: Vec<u8>) -> Vec<u8> {
        let mut shm = multiproc_ipc::shm::SharedMemory::create(
            &crate::worker::block_name(),
            body.len().max(1),
        )
        .unwrap();
        let _ = shm.unlink();
        shm.write_at(0, body).unwrap();
        let body = TaskBody::Shared(std::sync::Arc::new(shm), body.len(), spare);
        tramp_chunk::<u32, f64>().call(body).unwrap()
    }

    fn halving_chunk(items: &[u32]) -> Vec<u8> {
        codec::encode(&(FnRef::new(halve_unless_five_divides), PlainSlice(items))).unwrap()
    }

    /// Plain numbers in and out: the outcome is written into the worker's
    /// buffer (no allocation of its own), and a panic anywhere keeps every
    /// other item's result.
    #[test]
    fn a_plain_chunk_is_written_into_the_workers_buffer_and_keeps_per_item_errors() {
        install_panic_hook();
        let spare = Vec::with_capacity(4096);
        let at = spare.as_ptr();
        let out = run_in_block(&halving_chunk(&[1, 2, 3, 4]), spare);
        assert_eq!(out.as_ptr(), at, "the outcome is in the spare buffer");
        match decode_chunk::<f64>(&out, 4) {
            ChunkResult::All(v) => assert_eq!(v, [0.5, 1.0, 1.5, 2.0]),
            ChunkResult::Mixed(_) => panic!("expected the all-ok form"),
        }
        // A panic at the first item, at two in the middle, at the last.
        for items in [&[5u32, 1, 2][..], &[1, 10, 3, 15, 4], &[1, 2, 20]] {
            let got = decode_chunk::<f64>(
                &run_in_block(&halving_chunk(items), Vec::new()),
                items.len(),
            )
            .into_items();
            assert_eq!(got.len(), items.len());
            for (x, r) in items.iter().zip(&got) {
                match r {
                    Ok(v) => assert_eq!(*v, f64::from(*x) / 2.0, "{items:?}"),
                    Err(e) => {
                        assert_eq!(x % 5, 0, "{items:?}: {e}");
                        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
                        assert_eq!(e.panic_info().unwrap().message, format!("five divides {x}"));
                    }
                }
            }
        }
        // A body cut short fails every item of the chunk, clearly.
        let body = halving_chunk(&[1, 2, 3]);
        let got =
            decode_chunk::<f64>(&run_in_block(&body[..body.len() - 2], Vec::new()), 3).into_items();
        assert_eq!(got.len(), 3);
        for r in got {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Serialization);
            assert!(
                e.to_string()
                    .contains("cannot decode the chunk's arguments"),
                "{e}"
            );
        }
        // The hook stays: `chunk_outcomes_keep_per_item_errors`, which may
        // run beside this test, reads panic locations through it.
    }

    fn shout(s: String) -> String {
        s.to_uppercase()
    }

    #[test]
    fn a_chunk_of_other_types_goes_item_by_item_and_a_torn_block_is_an_error() {
        let words = ["ab".to_string(), "c".to_string()];
        let body = codec::encode(&(FnRef::new(shout), PlainSlice(&words))).unwrap();
        let out = tramp_chunk::<String, String>()
            .call(TaskBody::Inline(body))
            .unwrap();
        match decode_chunk::<String>(&out, 2) {
            ChunkResult::All(v) => assert_eq!(v, ["AB", "C"]),
            ChunkResult::Mixed(_) => panic!("expected the all-ok form"),
        }
        // Results that are 17 bytes long: not a whole number of u64s.
        let mut torn = vec![CHUNK_ALL_OK];
        torn.extend(codec::encode(&PlainSlice(&[7u8; 17])).unwrap());
        let got = decode_chunk::<u64>(&torn, 2).into_items();
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Serialization));
    }

    #[test]
    fn a_chunk_decodes_into_its_place_in_a_vector_or_leaves_it_as_it_was() {
        let run = |items: &[u64], f: fn(u64) -> u64| {
            let body = codec::encode(&(FnRef::new(f), PlainSlice(items))).unwrap();
            tramp_chunk::<u64, u64>()
                .call(TaskBody::Inline(body))
                .unwrap()
        };
        let mut all = vec![100u64];
        assert!(decode_chunk_at(&run(&[1, 2, 3], square), 3, &mut all, 1).is_ok());
        assert_eq!(all, [100, 1, 4, 9]);
        // A count that does not match the chunk's items.
        match decode_chunk_at(&run(&[4, 5], square), 3, &mut all, 4) {
            Err(ChunkResult::Mixed(v)) => assert_eq!(v.len(), 3),
            _ => panic!("expected a failed chunk"),
        }
        assert_eq!(all, [100, 1, 4, 9]);
        // A failed item: the results go back to the caller, item by item.
        install_panic_hook();
        match decode_chunk_at(&run(&[2, 3], boom), 2, &mut all, 4) {
            Err(ChunkResult::Mixed(v)) => {
                assert_eq!(*v[0].as_ref().unwrap(), 2);
                assert_eq!(v[1].as_ref().unwrap_err().kind(), ErrorKind::TaskPanicked);
            }
            _ => panic!("expected per-item outcomes"),
        }
        assert_eq!(all.len(), 4);
        // A torn block.
        let mut torn = vec![CHUNK_ALL_OK];
        torn.extend(codec::encode(&PlainSlice(&[7u8; 17])).unwrap());
        assert!(decode_chunk_at(&torn, 2, &mut all, 4).is_err());
        assert_eq!(all.len(), 4);
        // Results that are not plain numbers take the vector path.
        let words = ["ab".to_string()];
        let body = codec::encode(&(FnRef::new(shout), PlainSlice(&words))).unwrap();
        let out = tramp_chunk::<String, String>()
            .call(TaskBody::Inline(body))
            .unwrap();
        let mut strings = vec!["x".to_string()];
        assert!(decode_chunk_at(&out, 1, &mut strings, 1).is_ok());
        assert_eq!(strings, ["x", "AB"]);
        // ... and only onto the end: placed elsewhere, they come back.
        match decode_chunk_at(&out, 1, &mut strings, 5) {
            Err(ChunkResult::All(v)) => assert_eq!(v, ["AB"]),
            _ => panic!("expected the decoded chunk back"),
        }
        assert_eq!(strings.len(), 2);
        // Plain results go where they belong, zeros in the gap until the
        // chunk before them comes in.
        let mut placed = vec![100u64];
        assert!(decode_chunk_at(&run(&[3, 4], square), 2, &mut placed, 3).is_ok());
        assert_eq!(placed, [100, 0, 0, 9, 16]);
        assert!(decode_chunk_at(&run(&[1, 2], square), 2, &mut placed, 1).is_ok());
        assert_eq!(placed, [100, 1, 4, 9, 16]);
    }

    /// A chunk whose body is its record writes its outcome into the record
    /// buffer of the chunk before, and leaves its own for the next: after
    /// the first, chunk after chunk allocates no buffer (a test thread is
    /// a worker's main thread here: the kept buffer is the thread's).
    #[test]
    fn chunks_in_their_records_trade_buffers_with_the_chunk_before() {
        let tramp = tramp_chunk::<u32, f64>();
        let head = task_head(KIND_INLINE, 7, &tramp).unwrap();
        let run = |mut rec: Vec<u8>, items: &[u32]| {
            rec.clear();
            rec.extend_from_slice(&head);
            rec.extend_from_slice(&halving_chunk(items));
            let offset = head.len();
            tramp.call(TaskBody::Record(rec, offset)).unwrap()
        };
        let first = Vec::with_capacity(256);
        let first_at = first.as_ptr();
        let out = run(first, &[2, 4]);
        match decode_chunk::<f64>(&out, 2) {
            ChunkResult::All(v) => assert_eq!(v, [1.0, 2.0]),
            ChunkResult::Mixed(_) => panic!("expected the all-ok form"),
        }
        // The worker reads the next record into the outcome's buffer.
        let out = run(out, &[6]);
        assert_eq!(out.as_ptr(), first_at, "the first record's buffer");
        assert!(matches!(decode_chunk::<f64>(&out, 1), ChunkResult::All(v) if v == [3.0]));
        // A chunk that panics writes its outcome anew, and still leaves its
        // record's buffer (here the first one again) to the next chunk.
        install_panic_hook();
        let out = run(out, &[5, 8]);
        match decode_chunk::<f64>(&out, 2) {
            ChunkResult::Mixed(v) => {
                assert_eq!(v[0].as_ref().unwrap_err().kind(), ErrorKind::TaskPanicked);
                assert_eq!(v[1].as_ref().unwrap(), &4.0);
            }
            ChunkResult::All(_) => panic!("expected per-item outcomes"),
        }
        let out = run(out, &[12]);
        assert_eq!(
            out.as_ptr(),
            first_at,
            "the panicking chunk's record buffer"
        );
        assert!(matches!(decode_chunk::<f64>(&out, 1), ChunkResult::All(v) if v == [6.0]));
        // A buffer too large to keep is let go.
        let huge = Vec::with_capacity(RECORD_SPARE_MAX + 1);
        let _ = run(huge, &[1]);
        assert_eq!(RECORD_SPARE.with(Cell::take).capacity(), 0);
    }

    #[test]
    fn one_task_round_trips_and_records_parse() {
        let body = codec::encode(&(FnRef::new(square), 9u64)).unwrap();
        let tramp = tramp_one::<u64, u64>();
        let head = task_head(KIND_INLINE, 42, &tramp).unwrap();
        let rec = [head, body].concat();
        let t = parse_task(&rec).unwrap();
        assert_eq!((t.kind, t.id), (KIND_INLINE, 42));
        let out = t
            .tramp
            .unwrap()
            .call(TaskBody::Inline(t.body.to_vec()))
            .unwrap();
        assert_eq!(decode_outcomes::<u64>(&out, 1)[0].as_ref().unwrap(), &81);
        // The body read in place from the whole record.
        let offset = rec.len() - t.body.len();
        let out = tramp.call(TaskBody::Record(rec.clone(), offset)).unwrap();
        assert_eq!(decode_one::<u64>(&out).unwrap(), 81);
        assert!(parse_task(&rec[..5]).is_none());
    }
}
