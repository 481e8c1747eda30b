//! `Value` and `Array` built around a caller's `Lock` or `RLock` (Python's
//! `lock=` argument), across processes (issue 8, item 12).

use multiproc::codec;
use multiproc::sync::{Lock, RLock};
use multiproc::value::{Array, Value};
use multiproc_testkit::{serial_shm_checked, Kid};

const N: u64 = 5_000;

/// Under the shared RLock, moves one unit from the value into the array's
/// slot `me`, re-entering the lock for each object.
fn move_units(
    (count, slots, lock, me): (Value<u64, RLock>, Array<u64, RLock>, RLock, usize),
) -> u64 {
    for _ in 0..N {
        let _outer = lock.lock().unwrap();
        let mut n = count.lock().unwrap(); // re-entered
        let g = slots.lock().unwrap(); // re-entered
                                       // Deliberately non-atomic read-modify-writes: only the lock keeps them exact.
        *n -= 1;
        g.set(me, g.get(me).unwrap() + 1).unwrap();
        g.set(2, g.get(2).unwrap() + 1).unwrap();
    }
    N
}

#[test]
fn value_and_array_share_a_callers_rlock_across_processes() {
    let _s = serial_shm_checked();
    let lock = RLock::new().unwrap();
    let count = Value::using_lock(2 * N, lock.clone()).unwrap();
    let slots = Array::<u64, RLock>::using_lock(3, lock.clone()).unwrap();
    assert!(count.get_lock().same_lock(&lock));
    assert!(slots.get_lock().same_lock(&lock));
    let kids: Vec<_> = (0..2)
        .map(|me| {
            let args = (count.clone(), slots.clone(), lock.clone(), me);
            Kid::spawn(move_units, args)
        })
        .collect();
    for k in kids {
        assert_eq!(k.join(), N);
    }
    assert_eq!(count.get(), 0);
    assert_eq!(slots.to_vec(), [N, N, 2 * N]);
    // Holding the caller's lock excludes the value's users: it is the same lock.
    let held = lock.lock().unwrap();
    assert!(count.get_lock().is_owned());
    drop(held);
}

fn add_under((v, lock): (Value<u64, Lock>, Lock)) -> u64 {
    for _ in 0..N {
        // Holding the caller's lock holds the value's: they are one lock.
        let held = lock.lock().unwrap();
        assert!(
            v.get_lock().try_lock().is_err(),
            "the value's lock was free while the caller's lock was held"
        );
        drop(held);
        *v.lock().unwrap() += 1;
    }
    N
}

#[test]
fn value_uses_a_callers_lock_and_travels_with_it() {
    let _s = serial_shm_checked();
    let lock = Lock::new().unwrap();
    let v = Value::using_lock(0u64, lock.clone()).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| Kid::spawn(add_under, (v.clone(), lock.clone())))
        .collect();
    for k in kids {
        assert_eq!(k.join(), N);
    }
    assert_eq!(v.get(), 2 * N);
    // The handle crosses processes with its lock (both by name).
    let again: Value<u64, Lock> = codec::decode(&codec::encode(&v).unwrap()).unwrap();
    assert!(again.get_lock().same_lock(&lock));
    assert_eq!(again.get(), 2 * N);
    let g = lock.lock().unwrap();
    assert!(
        again.try_lock().is_err(),
        "the caller's lock is the value's"
    );
    drop(g);
    // A value with its own lock does not decode as one with an RLock.
    let own = Value::new(1u64).unwrap();
    assert!(codec::decode::<Value<u64, RLock>>(&codec::encode(&own).unwrap()).is_err());
    // An array too.
    let a = Array::from_slice_using_lock(&[1i32, 2], lock.clone()).unwrap();
    let b: Array<i32, Lock> = codec::decode(&codec::encode(&a).unwrap()).unwrap();
    assert_eq!(b.to_vec(), [1, 2]);
    assert!(b.get_lock().same_lock(&lock));
}
