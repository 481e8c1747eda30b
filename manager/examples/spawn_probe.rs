//! Probe: 100 processes spawned then joined, with and without a manager call.
use std::time::Instant;
fn noop(_: ()) {}
fn one_call(d: multiproc_manager::DictProxy<String, i64>) {
    let _ = d.update_with(&"count".to_string(), |c| c.unwrap_or(0) - 1);
}
fn main() -> multiproc_manager::Result<()> {
    if std::env::var_os("INIT").is_some() {
        multiproc_ipc::init()?;
    }
    let t = Instant::now();
    let ps: Vec<_> = (0..100)
        .map(|_| multiproc_ipc::Process::spawn(noop, ()).unwrap())
        .collect();
    let spawned = t.elapsed();
    for p in ps {
        p.join()?;
    }
    eprintln!("noop: spawn {spawned:?} total {:?}", t.elapsed());
    let m = multiproc_manager::Manager::start()?;
    let d = m.dict_from([("count".to_string(), 100i64)])?;
    let t = Instant::now();
    let ps: Vec<_> = (0..100)
        .map(|_| multiproc_ipc::Process::spawn(one_call, d.clone()).unwrap())
        .collect();
    let spawned = t.elapsed();
    for p in ps {
        p.join()?;
    }
    eprintln!(
        "one manager call: spawn {spawned:?} total {:?} count {:?}",
        t.elapsed(),
        d.get(&"count".to_string())?
    );
    Ok(())
}
