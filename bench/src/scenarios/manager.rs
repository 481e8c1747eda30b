//! The manager scenarios: `manager_decrement_seed`, `manager_decrement_heavy`
//! (plus its `update_with` variant as extra fields), `manager_dict_ops` and
//! `remote_manager_queue`.

use std::time::{Duration, Instant};

use multiproc::value::RawValue;
use multiproc::{DictProxy, Lock, Manager, ManagerServer, Process, RemoteManager};

use crate::record::{round, Record};
use crate::registry::{BenchError, Params};

const KEY: &str = "count";

fn check(ok: bool, what: &str) -> Result<(), BenchError> {
    if ok {
        Ok(())
    } else {
        Err(BenchError(what.to_owned()))
    }
}

/// `with lock: d["count"] -= 1`, `times` times.
fn decrement_many((d, lock, times): (DictProxy<String, i64>, Lock, u64)) -> Result<(), String> {
    let key = KEY.to_string();
    for _ in 0..times {
        let _guard = lock.lock().map_err(|e| e.to_string())?;
        let c = d
            .get(&key)
            .map_err(|e| e.to_string())?
            .ok_or("count is missing")?;
        d.insert(&key, &(c - 1)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The same decrement, run inside the manager: no lock, one round trip.
fn update_many((d, times): (DictProxy<String, i64>, u64)) -> Result<(), String> {
    let key = KEY.to_string();
    for _ in 0..times {
        d.update_with(&key, |c| c.unwrap_or(0) - 1)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn join_all(ps: Vec<Process<Result<(), String>>>) -> Result<bool, BenchError> {
    let mut ok = true;
    for p in ps {
        if let Err(e) = p.join()? {
            eprintln!("manager bench: a process failed: {e}");
            ok = false;
        }
    }
    Ok(ok)
}

/// The whole classic example, from `Manager::start` to `shutdown`.
pub fn decrement_seed(params: &Params) -> Result<Record, BenchError> {
    let n = params.get("processes")?;
    let t_begin = Instant::now();
    let manager = Manager::start()?;
    let t_up = Instant::now();
    let d = manager.dict_from([(KEY.to_string(), n as i64)])?;
    let lock = Lock::new()?;
    let t_procs = Instant::now();
    let ps = (0..n)
        .map(|_| Process::spawn(decrement_many, (d.clone(), lock.clone(), 1)))
        .collect::<multiproc::Result<Vec<_>>>()?;
    let ok = join_all(ps)?;
    let t_procs_end = Instant::now();
    let final_count = d.get(&KEY.to_string())?.unwrap_or(i64::MIN);
    let t_shutdown = Instant::now();
    manager.shutdown()?;
    let t_end = Instant::now();
    check(final_count == 0 && ok, "final count is not 0")?;
    let secs = |a: Instant, b: Instant| round((b - a).as_secs_f64(), 6);
    Ok(
        Record::timed("manager_decrement_seed", n, (t_end - t_begin).as_secs_f64())
            .with("manager_start_seconds", secs(t_begin, t_up))
            .with("processes_seconds", secs(t_procs, t_procs_end))
            .with("shutdown_seconds", secs(t_shutdown, t_end))
            .with("final_count", final_count)
            .with("correct", final_count == 0 && ok),
    )
}

/// Contended lock + get + set; the `update_with` variant as extra fields.
pub fn decrement_heavy(params: &Params) -> Result<Record, BenchError> {
    let processes = params.get("processes")?;
    let per = params.get("decrements_per_process")?;
    let total = processes * per;
    let manager = Manager::start()?;
    let d = manager.dict_from([(KEY.to_string(), total as i64)])?;
    let lock = Lock::new()?;

    let start = Instant::now();
    let ps = (0..processes)
        .map(|_| Process::spawn(decrement_many, (d.clone(), lock.clone(), per)))
        .collect::<multiproc::Result<Vec<_>>>()?;
    let ok = join_all(ps)?;
    let seconds = start.elapsed().as_secs_f64();
    let final_count = d.get(&KEY.to_string())?.unwrap_or(i64::MIN);

    d.insert(&KEY.to_string(), &(total as i64))?;
    let start = Instant::now();
    let ps = (0..processes)
        .map(|_| Process::spawn(update_many, (d.clone(), per)))
        .collect::<multiproc::Result<Vec<_>>>()?;
    let ok2 = join_all(ps)?;
    let update_seconds = start.elapsed().as_secs_f64();
    let update_final = d.get(&KEY.to_string())?.unwrap_or(i64::MIN);
    manager.shutdown()?;
    check(final_count == 0 && ok, "final count is not 0")?;
    check(update_final == 0 && ok2, "update_with final count is not 0")?;
    Ok(Record::timed("manager_decrement_heavy", total, seconds)
        .with("processes", processes)
        .with("final_count", final_count)
        .with("correct", true)
        .with(
            "update_with_ops_per_sec",
            round(total as f64 / update_seconds, 1),
        )
        .with("update_with_final_count", update_final))
}

/// One client: `keys` sets then `keys` gets.
pub fn dict_ops(params: &Params) -> Result<Record, BenchError> {
    let count = params.count("keys")?;
    let keys: Vec<String> = (0..count).map(|i| format!("key{i}")).collect();
    let manager = Manager::start()?;
    let d = manager.dict::<String, u64>()?;
    let start = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        d.insert(k, &(i as u64))?;
    }
    let set_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut total = 0u64;
    for k in &keys {
        total += d.get(k)?.unwrap_or(0);
    }
    let get_seconds = start.elapsed().as_secs_f64();
    check(d.len()? == count, "wrong dict length")?;
    check(
        total == (count as u64) * (count as u64).saturating_sub(1) / 2,
        "wrong sum",
    )?;
    manager.shutdown()?;
    Ok(Record::timed(
        "manager_dict_ops",
        2 * count as u64,
        set_seconds + get_seconds,
    )
    .with("set_ops_per_sec", round(count as f64 / set_seconds, 1))
    .with("get_ops_per_sec", round(count as f64 / get_seconds, 1)))
}

const AUTHKEY: &[u8] = b"multiproc-bench";

/// The server process: serves the two queues and reports its port.
fn serve_queues(port: RawValue<u32>) {
    let server = match ManagerServer::builder(AUTHKEY)
        .queue("tasks")
        .queue("results")
        .bind("127.0.0.1:0")
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("manager bench: cannot start the server: {e}");
            port.set(u32::MAX);
            return;
        }
    };
    port.set(u32::from(server.local_addr().port()));
    let _ = server.serve_forever();
}

fn square_worker(port: u16) -> Result<(), String> {
    let m = RemoteManager::connect(("127.0.0.1", port), AUTHKEY).map_err(|e| e.to_string())?;
    let tasks = m.queue::<Option<u64>>("tasks").map_err(|e| e.to_string())?;
    let results = m.queue::<u64>("results").map_err(|e| e.to_string())?;
    while let Some(t) = tasks.get().map_err(|e| e.to_string())? {
        results.put(t * t).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Master put, worker get + put, master get: over TCP with an authkey.
pub fn remote_queue(params: &Params) -> Result<Record, BenchError> {
    let round_trips = params.get("round_trips")?;
    let warmup = params.get("warmup")?;
    let port = RawValue::new(0u32)?;
    let server = Process::spawn(serve_queues, port.clone())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while port.get() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let p = port.get();
    let port = match u16::try_from(p) {
        Ok(p) if p != 0 => p,
        _ => {
            let _ = server.kill();
            return Err(BenchError("the server did not start".to_owned()));
        }
    };
    let worker = Process::spawn(square_worker, port)?;
    let run = || -> Result<f64, BenchError> {
        let m = RemoteManager::connect(("127.0.0.1", port), AUTHKEY)?;
        let tasks = m.queue::<Option<u64>>("tasks")?;
        let results = m.queue::<u64>("results")?;
        for i in 0..warmup {
            tasks.put(Some(i)).map_err(multiproc::Error::from)?;
            check(results.get()? == i * i, "wrong result")?;
        }
        let start = Instant::now();
        for i in 0..round_trips {
            tasks.put(Some(i)).map_err(multiproc::Error::from)?;
            check(results.get()? == i * i, "wrong result")?;
        }
        let seconds = start.elapsed().as_secs_f64();
        tasks.put(None).map_err(multiproc::Error::from)?;
        Ok(seconds)
    };
    let seconds = run();
    let worker_ok = match seconds {
        Ok(_) => matches!(worker.join(), Ok(Ok(()))),
        Err(_) => {
            let _ = worker.kill();
            false
        }
    };
    let _ = server.kill();
    let _ = server.join();
    let seconds = seconds?;
    check(worker_ok, "the worker failed")?;
    Ok(Record::timed("remote_manager_queue", round_trips, seconds)
        .with("transport", "tcp-loopback")
        .with(
            "mean_round_trip_us",
            round(seconds / round_trips as f64 * 1e6, 1),
        )
        .with("worker_exitcode", 0))
}
