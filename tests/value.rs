//! `Value` and `Array` across processes: exact counts under the lock, atomic
//! operations, re-attaching in an unrelated process, and cleanup.

mod sync_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::sync::Event;
use multiproc::value::{Array, RawArray, Value};
use multiproc::ErrorKind;
use sync_support::{serial, Kid, LIMIT};

const N: u64 = 20_000;

fn add_locked(v: Value<u64>) -> u64 {
    for _ in 0..N {
        *v.lock().unwrap() += 1;
    }
    N
}

fn add_with_get_lock(v: Value<u64>) -> u64 {
    for _ in 0..N {
        // Python's `with v.get_lock(): v.value += 1`, spelled out.
        let _g = v.get_lock().lock().unwrap();
        v.set(v.get() + 1);
    }
    N
}

fn add_atomic(v: Value<u64>) -> u64 {
    for _ in 0..N {
        v.fetch_add(1);
    }
    N
}

#[test]
fn two_processes_increment_exactly_under_the_lock() {
    let _s = serial();
    for f in [add_locked, add_with_get_lock, add_atomic] {
        let v = Value::new(0u64).unwrap();
        let kids: Vec<_> = (0..2).map(|_| Kid::spawn(f, v.clone())).collect();
        for k in kids {
            assert_eq!(k.join(), N);
        }
        assert_eq!(v.get(), 2 * N);
    }
}

fn fill_half((a, first): (Array<i32>, bool)) -> usize {
    let range = if first { 0..50 } else { 50..100 };
    for i in range {
        a.set(i, i as i32 * 2).unwrap();
        a.fetch_add(100, 1).unwrap_err(); // index 100 is out of range
    }
    let g = a.lock().unwrap();
    g.set(0, g.get(0).unwrap()).unwrap();
    a.len()
}

#[test]
fn array_is_shared_by_processes() {
    let _s = serial();
    let a = Array::<i32>::new(100).unwrap();
    let kids: Vec<_> = [true, false]
        .into_iter()
        .map(|first| Kid::spawn(fill_half, (a.clone(), first)))
        .collect();
    for k in kids {
        assert_eq!(k.join(), 100);
    }
    let want: Vec<i32> = (0..100).map(|i| i * 2).collect();
    assert_eq!(a.lock().unwrap().to_vec(), want);
    assert_eq!(a.get(100).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let raw = RawArray::from_slice(&[true, false]).unwrap();
    assert_eq!(raw.to_vec(), [true, false]);
}

const ROLE: &str = "MP_VALUE_ROLE";
const ARG: &str = "MP_VALUE_ARG";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The body of the re-executed (unrelated, not forked) child; a no-op in a
/// normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let bytes = unhex(&std::env::var(ARG).unwrap());
    match role.as_str() {
        "add" => {
            let (v, done): (Value<u64>, Event) = multiproc::codec::decode(&bytes).unwrap();
            for _ in 0..1000 {
                *v.lock().unwrap() += 1;
            }
            done.set();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn handles_reattach_in_an_unrelated_process() {
    let _s = serial();
    let v = Value::new(5u64).unwrap();
    let done = Event::new().unwrap();
    let arg = hex(&multiproc::codec::encode(&(v.clone(), done.clone())).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--test-threads=1"])
        .env(ROLE, "add")
        .env(ARG, arg)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ok = done.wait_timeout(LIMIT);
    if !ok {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(ok && status.success(), "child failed: {status:?}");
    assert_eq!(v.get(), 1005);
}

#[test]
fn dropping_the_last_handle_removes_the_shared_memory() {
    let _s = serial();
    let v = Value::new(1.5f64).unwrap();
    let clone = v.clone();
    let before = sync_support::leftovers();
    assert_eq!(before.len(), 1, "one region per value: {before:?}");
    drop(v);
    assert_eq!(sync_support::leftovers(), before, "a clone keeps it alive");
    drop(clone);
    assert!(sync_support::leftovers().is_empty());
    // A lock with a short timeout also works on values.
    let v = Value::new(0i32).unwrap();
    let g = v.lock().unwrap();
    assert!(v.lock_timeout(Duration::from_millis(10)).is_err()); // same thread: refused
    drop(g);
}
