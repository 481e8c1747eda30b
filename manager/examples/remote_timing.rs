//! Quick timing of the remote manager.
use std::time::Instant;
fn main() -> multiproc_manager::Result<()> {
    let s = multiproc_manager::ManagerServer::builder(b"k")
        .queue("q")
        .bind("127.0.0.1:0")?;
    let addr = s.local_addr();
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1usize);
    let t = Instant::now();
    let hs: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let r = multiproc_manager::RemoteManager::connect(addr, b"k").unwrap();
                let q = r.queue::<u32>("q").unwrap();
                for i in 0..1000 {
                    q.put(&i).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    eprintln!("{n} clients x 1000 puts: {:?}", t.elapsed());
    Ok(())
}
