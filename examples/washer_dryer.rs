//! The washer and the dryers: Python's classic `JoinableQueue` example.
//!
//! A washer process washes dishes and puts them on a `JoinableQueue`; two
//! daemon dryer processes take them, dry them and call `task_done`; the main
//! process `join`s the queue, which returns once every dish is dry.

use std::time::Duration;

use multiproc::{JoinableQueue, Process};

fn washer((dishes, output): (Vec<String>, JoinableQueue<String>)) {
    for dish in dishes {
        println!("washer {}: washing {dish} dish", std::process::id());
        if output.put(dish).is_err() {
            return;
        }
    }
}

fn dryer((name, input): (String, JoinableQueue<String>)) -> usize {
    let mut dried = 0;
    // The queue is closed once everything is dry; get then fails and the
    // dryer stops. (As daemons, dryers would also be stopped at exit.)
    while let Ok(dish) = input.get() {
        std::thread::sleep(Duration::from_millis(20));
        println!("{name}: drying {dish} dish");
        dried += 1;
        if let Err(e) = input.task_done() {
            eprintln!("{name}: {e}");
        }
    }
    dried
}

fn main() -> multiproc::Result<()> {
    let dish_queue = JoinableQueue::new()?;
    let dryers = ["dryer-1", "dryer-2"]
        .into_iter()
        .map(|name| {
            Process::builder()
                .name(name)
                .daemon(true)
                .spawn(dryer, (name.to_string(), dish_queue.clone()))
        })
        .collect::<multiproc::Result<Vec<_>>>()?;

    let dishes = ["salad", "bread", "entree", "dessert", "soup", "cake"]
        .map(String::from)
        .to_vec();
    let count = dishes.len();
    let washer = Process::builder()
        .name("washer")
        .spawn(washer, (dishes, dish_queue.clone()))?;
    washer.join()?;
    println!("main: washer is done, waiting for the dishes to dry");

    dish_queue.join_timeout(Duration::from_secs(30))?;
    println!("main: all {count} dishes are dry");

    dish_queue.close();
    let mut dried = 0;
    for mut d in dryers {
        let name = d.name().to_owned();
        let n = d.join_timeout(Duration::from_secs(10))?;
        println!("main: {name} dried {n} dishes");
        dried += n;
    }
    assert_eq!(dried, count);
    println!("main: done");
    Ok(())
}
