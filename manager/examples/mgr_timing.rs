//! Quick timing of the local manager's hot path and connection set-up.
use std::time::Instant;
fn main() -> multiproc_manager::Result<()> {
    let t = Instant::now();
    let m = multiproc_manager::Manager::start()?;
    eprintln!("start {:?}", t.elapsed());
    let t = Instant::now();
    let d = m.dict::<String, i64>()?;
    eprintln!("first dict {:?}", t.elapsed());
    let t = Instant::now();
    for _ in 0..100 {
        let d = d.clone();
        std::thread::spawn(move || d.len().map(drop))
            .join()
            .unwrap()?;
    }
    eprintln!("100 fresh connections {:?}", t.elapsed() / 100);
    let t = Instant::now();
    for i in 0..50_000 {
        d.insert(&format!("key{i}"), &i)?;
    }
    for i in 0..50_000 {
        let _ = d.get(&format!("key{i}"))?;
    }
    eprintln!("100k ops {:?}", t.elapsed());
    let t = Instant::now();
    m.shutdown()?;
    eprintln!("shutdown {:?}", t.elapsed());
    Ok(())
}
