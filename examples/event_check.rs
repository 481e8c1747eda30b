//! `Event` between processes: a checker process probes a "service" and sets
//! the event once it is up; three connector processes wait for it with a
//! timeout, retrying up to three times.
//!
//! Run with `cargo run --example event_check`.

use std::time::{Duration, Instant};

use multiproc::{Event, Process};

/// How long the "service" takes to come up.
const STARTUP: Duration = Duration::from_millis(700);
/// How long a connector waits per attempt.
const ATTEMPT: Duration = Duration::from_millis(300);
const ATTEMPTS: u32 = 3;

fn check_service(ready: Event) -> bool {
    println!("checker: checking the service...");
    let started = Instant::now();
    // Stands in for polling a real service until it answers.
    while started.elapsed() < STARTUP {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("checker: the service is up; setting the event");
    ready.set();
    true
}

fn connect((ready, id): (Event, u32)) -> bool {
    for attempt in 1..=ATTEMPTS {
        if ready.wait_timeout(ATTEMPT) {
            println!("connector {id}: connected on attempt {attempt}");
            return true;
        }
        println!("connector {id}: service not ready (attempt {attempt}/{ATTEMPTS}), retrying");
    }
    println!("connector {id}: gave up after {ATTEMPTS} attempts");
    false
}

fn main() -> multiproc::Result<()> {
    multiproc::init()?;
    let ready = Event::new()?;
    let connectors = (1..=3)
        .map(|id| Process::spawn(connect, (ready.clone(), id)))
        .collect::<multiproc::Result<Vec<_>>>()?;
    let checker = Process::spawn(check_service, ready.clone())?;
    checker.join()?;
    let mut connected = 0;
    for c in connectors {
        if c.join()? {
            connected += 1;
        }
    }
    println!(
        "{connected} of 3 connectors connected; event is {}",
        if ready.is_set() { "set" } else { "clear" }
    );
    Ok(())
}
