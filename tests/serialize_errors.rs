//! A value whose `Serialize` or `Deserialize` fails, as a pool task's result
//! or argument or a `Process`'s argument or result: the error carries the
//! serializer's own message (issue 8, item 5).

use multiproc::{ErrorKind, Pool, Process};
use multiproc_testkit::{checked, Reexec, LIMIT};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Its `Serialize` always fails with "my message".
#[derive(Debug)]
struct BadSer;

impl Serialize for BadSer {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("my message"))
    }
}

impl<'de> Deserialize<'de> for BadSer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BadSer, D::Error> {
        <()>::deserialize(d).map(|()| BadSer)
    }
}

/// Encodes as a `u32`; its `Deserialize` always fails with "my decode message".
#[derive(Debug)]
struct BadDe;

impl Serialize for BadDe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        7u32.serialize(s)
    }
}

impl<'de> Deserialize<'de> for BadDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BadDe, D::Error> {
        u32::deserialize(d)?;
        Err(serde::de::Error::custom("my decode message"))
    }
}

fn make_bad_ser(_: ()) -> BadSer {
    BadSer
}

fn take_bad_ser(_: BadSer) -> u32 {
    1
}

fn make_bad_de(_: ()) -> BadDe {
    BadDe
}

fn take_bad_de(_: BadDe) -> u32 {
    1
}

/// Asserts that `r` failed with a `Serialization` error quoting `message`.
fn assert_quotes<T: std::fmt::Debug>(r: multiproc::Result<T>, message: &str, what: &str) {
    match r {
        Ok(v) => panic!("{what}: succeeded with {v:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Serialization, "{what}: {e}");
            assert!(e.to_string().contains(message), "{what}: {e}");
        }
    }
}

#[test]
fn pool_task_result_and_argument_errors_quote_the_serializer() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        assert_quotes(pool.apply(make_bad_ser, ()), "my message", "result");
        assert_quotes(pool.apply(take_bad_ser, BadSer), "my message", "argument");
        assert_quotes(
            pool.apply(make_bad_de, ()),
            "my decode message",
            "decoded result",
        );
        assert_quotes(
            pool.apply(take_bad_de, BadDe),
            "my decode message",
            "decoded argument",
        );
        // A map whose every item fails, and the pool goes on.
        let r = pool.map(make_bad_ser, vec![(); 3]);
        assert_quotes(r, "my message", "map result");
        assert_eq!(pool.apply(take_bad_ser, BadSer).ok(), None);
        pool.close();
        pool.join().unwrap();
    });
}

/// Forked directly, a `Process`'s argument is not encoded (as with Python's
/// `fork`); its result is.
#[test]
fn process_result_errors_quote_the_serializer() {
    checked(LIMIT, || {
        let r = Process::spawn(take_bad_ser, BadSer).and_then(|mut p| p.join_timeout(LIMIT));
        assert_eq!(r.ok(), Some(1), "a forked argument is not encoded");
        let r = Process::spawn(make_bad_ser, ()).and_then(|mut p| p.join_timeout(LIMIT));
        assert_quotes(r, "my message", "result");
        let r = Process::spawn(make_bad_de, ()).and_then(|mut p| p.join_timeout(LIMIT));
        assert_quotes(r, "my decode message", "decoded result");
    });
}

/// Through the fork server a `Process`'s argument is encoded: its errors
/// quote the serializer too. Runs in a copy of this binary whose
/// constructor started the fork server (before any thread).
#[test]
fn process_argument_errors_through_the_fork_server_quote_the_serializer() {
    let (status, out) = Reexec::test("helper_fork_server_arguments")
        .env(ROLE, "1")
        .spawn()
        .output(LIMIT);
    assert!(status.success(), "helper failed: {status}\n{out}");
    assert!(out.contains("ARGUMENTS-OK"), "{out}");
}

const ROLE: &str = "MP_SERIALIZE_ERRORS_SERVER";

extern "C" fn init_if_helper() {
    if std::env::var_os(ROLE).is_some() {
        // Checked by the helper through `fork_server()`.
        let _ = multiproc::init();
    }
}

// The loader calls the function pointers of `.init_array` before `main`.
#[used]
#[link_section = ".init_array"]
static INIT_IF_HELPER: extern "C" fn() = init_if_helper;

#[test]
fn helper_fork_server_arguments() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    assert!(multiproc_ipc::fork_server().is_some(), "no fork server");
    assert_quotes(
        Process::spawn(take_bad_ser, BadSer).map(|_| ()),
        "my message",
        "argument",
    );
    let r = Process::spawn(take_bad_de, BadDe).and_then(|mut p| p.join_timeout(LIMIT));
    assert_quotes(r, "my decode message", "decoded argument");
    let r = Process::spawn(make_bad_ser, ()).and_then(|mut p| p.join_timeout(LIMIT));
    assert_quotes(r, "my message", "result");
    println!("ARGUMENTS-OK");
}
