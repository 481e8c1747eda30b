//! A custom shared object, Python's `BaseManager.register("Counter",
//! Counter)`: a counter with `add`, `get` and `reset` that lives in a manager
//! process, used by a pool's tasks through a local `Manager`, then by a
//! remote client of a `ManagerServer` over TCP.
//!
//! Run with `cargo run --example shared_counter`; it prints what each part
//! did and exits 0.

use multiproc::{Manager, ManagerServer, Pool, Process, RemoteManager, SharedObject, SharedProxy};
use serde::{Deserialize, Serialize};

/// The object: its state lives in the manager.
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    value: i64,
}

/// Its methods, as the requests a client may send.
#[derive(Serialize, Deserialize)]
enum CounterCall {
    Add(i64),
    Get,
    Reset,
}

impl SharedObject for Counter {
    type Request = CounterCall;
    type Reply = i64;

    /// Runs in the manager, one call at a time.
    fn handle(&mut self, call: CounterCall) -> i64 {
        match call {
            CounterCall::Add(k) => self.value += k,
            CounterCall::Get => {}
            CounterCall::Reset => self.value = 0,
        }
        self.value
    }
}

/// The client's view: the counter's methods, each one call to the manager.
#[derive(Clone, Serialize, Deserialize)]
struct SharedCounter(SharedProxy<Counter>);

impl SharedCounter {
    /// Adds `k`; returns the new value.
    fn add(&self, k: i64) -> multiproc::Result<i64> {
        self.0.call(CounterCall::Add(k))
    }

    fn get(&self) -> multiproc::Result<i64> {
        self.0.call(CounterCall::Get)
    }

    fn reset(&self) -> multiproc::Result<i64> {
        self.0.call(CounterCall::Reset)
    }
}

/// A pool task: adds its number to the shared counter.
fn add_task((counter, k): (SharedCounter, i64)) -> Result<i64, String> {
    counter.add(k).map_err(|e| e.to_string())
}

const AUTHKEY: &[u8] = b"shared counter example";

/// A remote client in another process: connects to the server by address
/// and authkey, and adds 1 a hundred times.
fn remote_client(addr: String) -> Result<i64, String> {
    let remote = RemoteManager::connect(addr.as_str(), AUTHKEY).map_err(|e| e.to_string())?;
    let counter = SharedCounter(
        remote
            .shared::<Counter>("counter")
            .map_err(|e| e.to_string())?,
    );
    for _ in 0..100 {
        counter.add(1).map_err(|e| e.to_string())?;
    }
    counter.get().map_err(|e| e.to_string())
}

fn main() -> multiproc::Result<()> {
    multiproc::init()?;

    // 1. A local manager and a pool: 20 tasks add 1..=20 to one counter.
    let manager = Manager::start()?;
    let counter = SharedCounter(manager.register("counter", Counter::default())?);
    let pool = Pool::new(4)?;
    let tasks = (1..=20).map(|k| (counter.clone(), k));
    let seen = pool.map(add_task, tasks)?;
    pool.close();
    pool.join()?;
    let total = counter.get()?;
    println!(
        "pool: 20 tasks added 1..=20 in the manager (pid {}); counter = {total}",
        manager.pid()
    );
    let seen: Vec<i64> = seen.into_iter().collect::<Result<_, _>>().map_err(|e| {
        multiproc::Error::new(multiproc::ErrorKind::Remote, format!("a task failed: {e}"))
    })?;
    assert_eq!(total, 210);
    assert_eq!(seen.iter().max(), Some(&210));
    // Another handle on the same object, found by name.
    let by_name = SharedCounter(manager.shared::<Counter>("counter")?);
    println!("pool: found by name, reset -> {}", by_name.reset()?);
    manager.shutdown()?;

    // 2. A ManagerServer serving a counter over TCP, and a remote client in
    // another process.
    let server = ManagerServer::builder(AUTHKEY)
        .register("counter", Counter::default())
        .bind("127.0.0.1:0")?;
    let addr = server.local_addr();
    let client = Process::spawn(remote_client, addr.to_string())?;
    let from_client = client.join()?.map_err(|e| {
        multiproc::Error::new(
            multiproc::ErrorKind::Remote,
            format!("the client failed: {e}"),
        )
    })?;
    let here = SharedCounter(RemoteManager::connect(addr, AUTHKEY)?.shared::<Counter>("counter")?);
    println!("remote: a client at {addr} added 1 a hundred times; it read {from_client}");
    println!("remote: counter = {}", here.get()?);
    assert_eq!(here.get()?, 100);
    server.shutdown();
    Ok(())
}
