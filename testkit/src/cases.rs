//! The harness of a `harness = false` test binary (one that must keep its
//! main thread to itself: `init()` before any thread, a process with a single
//! thread): runs its cases one after the other on the main thread and reports
//! them as the test harness does.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Counts the cases of a `harness = false` test binary.
///
/// # Examples
///
/// ```
/// let mut cases = multiproc_testkit::Cases::new();
/// cases.run("adds", || assert_eq!(1 + 1, 2));
/// assert_eq!(cases.failed(), 0);
/// cases.run("fails", || panic!("on purpose"));
/// assert_eq!(cases.failed(), 1); // `finish` would now exit with status 1
/// ```
#[derive(Debug, Default)]
pub struct Cases {
    passed: usize,
    failed: usize,
}

impl Cases {
    /// No case run yet.
    pub fn new() -> Cases {
        Cases::default()
    }

    /// Runs `check`, printing `test NAME ... ok`, or `... FAILED` if it
    /// panics (its message is printed by the panic hook as it happens).
    pub fn run(&mut self, name: &str, check: impl FnOnce()) {
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(()) => {
                self.passed += 1;
                println!("test {name} ... ok");
            }
            Err(_) => {
                self.failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }

    /// Counts a failure found outside any case (a zombie left after all
    /// of them), printing `what`.
    pub fn fail(&mut self, what: &str) {
        self.failed += 1;
        println!("{what}");
    }

    /// The cases that failed so far.
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Prints the totals; exits the process with status 1 if any case failed.
    pub fn finish(self) {
        println!("{} passed, {} failed", self.passed, self.failed);
        if self.failed != 0 {
            std::process::exit(1);
        }
    }
}
