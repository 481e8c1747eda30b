//! The classic Manager example: a dict `{"count": 100}` held by a manager
//! process, a cross-process `Lock`, and 100 processes that each take the
//! lock, read `count` and write `count - 1`. After joining them all the
//! count is 0. The same again with `update_with`, which runs the decrement
//! inside the manager atomically: one round trip and no lock.
//!
//! Run with `cargo run --example decrement_counter`; the last line printed
//! is `{"count": 0}`.

use multiproc::{DictProxy, Lock, Manager, Process};

const PROCESSES: usize = 100;

/// One process: `with lock: d["count"] -= 1`.
fn decrement((d, lock): (DictProxy<String, i64>, Lock)) -> multiproc::Result<()> {
    let _guard = lock.lock()?;
    let key = "count".to_string();
    let count = d.get(&key)?.unwrap_or(0);
    d.insert(&key, &(count - 1))?;
    Ok(())
}

/// One process: the manager runs the decrement itself.
fn decrement_in_manager(d: DictProxy<String, i64>) -> multiproc::Result<i64> {
    d.update_with(&"count".to_string(), |c| c.unwrap_or(0) - 1)
}

fn main() -> multiproc::Result<()> {
    // First thing: start the fork server, so that the manager and the
    // processes are forked from a single-threaded process.
    multiproc::init()?;
    let manager = Manager::start()?;

    // With update_with: no lock at all.
    let counter = manager.dict_from([("count".to_string(), 100i64)])?;
    let workers = (0..PROCESSES)
        .map(|_| Process::spawn(decrement_in_manager, counter.clone()))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for w in workers {
        // join() gives the child's own Result: its error travelled back.
        w.join()??;
    }
    println!("update_with variant: {:?}", counter.to_map()?);

    // The classic: lock, read, write.
    let d = manager.dict_from([("count".to_string(), 100i64)])?;
    let lock = Lock::new()?;
    let workers = (0..PROCESSES)
        .map(|_| Process::spawn(decrement, (d.clone(), lock.clone())))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for w in workers {
        w.join()??;
    }
    let result = d.to_map()?;
    manager.shutdown()?;
    println!("{result:?}");
    Ok(())
}
