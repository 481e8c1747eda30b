//! A pool that has not been given a task yet spins nowhere: its workers
//! sleep until their first task and its result thread until its first
//! outcome, leaving the CPUs to the zygote forking the workers and to the
//! caller. (A file of its own: the spinner count is the whole program's,
//! and another test's pool would spin in it.)

use std::time::{Duration, Instant};

use multiproc_ipc::spin::{self, Policy, Spinning};
use multiproc_pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_pool_given_no_task_yet_spins_nowhere() {
    if spin::policy() != Policy::Adaptive {
        eprintln!("skipped: spinners are counted with the adaptive policy only");
        return;
    }
    // The count is live in this program: a spinner of its own shows.
    let own = Spinning::start();
    assert_eq!(spin::program_spinners(), 1);
    drop(own);
    for round in 0..5 {
        let pool = Pool::new(2).expect("pool");
        let until = Instant::now() + Duration::from_millis(5);
        let mut most = 0;
        while Instant::now() < until {
            most = most.max(spin::program_spinners());
        }
        assert_eq!(
            most, 0,
            "round {round}: a pool given no task yet had {most} spinning thread(s)"
        );
        assert_eq!(pool.apply(square, 7).expect("apply"), 49);
        pool.close();
        pool.join().expect("join");
    }
}
