//! Custom shared objects (Python's `BaseManager.register` with a class): a
//! user type served by a local manager or a `ManagerServer`, called through
//! a typed `SharedProxy` from this process and from others.

use std::time::Duration;

use multiproc_manager::{
    ErrorKind, Manager, ManagerServer, RemoteManager, SharedObject, SharedProxy,
};
use multiproc_testkit::{checked, Kid};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(120);

/// A counter that remembers who added to it.
#[derive(Default, Serialize, Deserialize)]
struct Tally {
    total: i64,
    callers: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
enum TallyOp {
    Add { by: i64, pid: u32 },
    Total,
    Callers,
    Reset,
    Panic,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum TallyReply {
    Total(i64),
    Callers(Vec<u32>),
}

impl SharedObject for Tally {
    type Request = TallyOp;
    type Reply = TallyReply;

    fn handle(&mut self, op: TallyOp) -> TallyReply {
        match op {
            TallyOp::Add { by, pid } => {
                // Not atomic by itself: two calls interleaved here would
                // lose an update, which the manager must prevent.
                let before = self.total;
                std::thread::yield_now();
                self.total = before + by;
                if !self.callers.contains(&pid) {
                    self.callers.push(pid);
                }
            }
            TallyOp::Total => {}
            TallyOp::Callers => return TallyReply::Callers(self.callers.clone()),
            TallyOp::Reset => *self = Tally::default(),
            TallyOp::Panic => panic!("tally asked to panic"),
        }
        TallyReply::Total(self.total)
    }
}

/// Another shared type, to check that proxies of the wrong type are refused.
struct Other;

impl SharedObject for Other {
    type Request = ();
    type Reply = ();

    fn handle(&mut self, _: ()) {}
}

fn add_many((t, n): (SharedProxy<Tally>, u32)) -> u32 {
    for _ in 0..n {
        t.call(TallyOp::Add {
            by: 1,
            pid: std::process::id(),
        })
        .unwrap();
    }
    std::process::id()
}

fn total(t: &SharedProxy<Tally>) -> i64 {
    match t.call(TallyOp::Total).unwrap() {
        TallyReply::Total(n) => n,
        r => panic!("unexpected reply {r:?}"),
    }
}

#[test]
fn a_local_shared_object_is_called_atomically_from_several_processes() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let t = m.register("tally", Tally::default()).unwrap();
        let kids: Vec<_> = (0..4)
            .map(|_| Kid::spawn(add_many, (t.clone(), 200)))
            .collect();
        let mut pids: Vec<u32> = kids.into_iter().map(Kid::join).collect();
        assert_eq!(total(&t), 800);
        // Every call ran in the manager, on the one object.
        let TallyReply::Callers(mut callers) = t.call(TallyOp::Callers).unwrap() else {
            panic!("unexpected reply");
        };
        callers.sort();
        pids.sort();
        assert_eq!(callers, pids);

        // Found by name, with its type; another type or name is refused.
        let again = m.shared::<Tally>("tally").unwrap();
        assert_eq!(again, t);
        let e = m.shared::<Other>("tally").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(
            e.to_string()
                .contains("shared object of Tally, not of Other"),
            "{e}"
        );
        assert_eq!(
            m.shared::<Tally>("nope").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let e = m.register("tally", Tally::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(total(&again), 800, "a failed register changed the object");

        // A panic in the object is the caller's error; the object serves on.
        let e = t.call(TallyOp::Panic).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
        assert_eq!(e.panic_info().unwrap().message, "tally asked to panic");
        assert_eq!(t.call(TallyOp::Reset).unwrap(), TallyReply::Total(0));

        // Anonymous objects are separate.
        let a = m.object(Tally::default()).unwrap();
        a.call(TallyOp::Add { by: 5, pid: 0 }).unwrap();
        assert_eq!((total(&a), total(&t)), (5, 0));
        m.shutdown().unwrap();
    });
}

#[test]
fn a_server_serves_a_registered_object_to_remote_clients() {
    checked(LIMIT, || {
        let key = b"shared objects key";
        let server = ManagerServer::builder(key)
            .register("tally", Tally::default())
            .register("other", Other)
            .quiet(true)
            .bind("127.0.0.1:0")
            .unwrap();
        let r = RemoteManager::connect(server.local_addr(), key).unwrap();
        let t = r.shared::<Tally>("tally").unwrap();
        // Threads here and a child process (forked after connect) at once.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || add_many((t, 100)))
            })
            .collect();
        let kid = Kid::spawn(add_many, (t.clone(), 100));
        for th in threads {
            th.join().unwrap();
        }
        kid.join();
        assert_eq!(total(&t), 300);
        let e = r.shared::<Tally>("other").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(
            r.dict::<u8, u8>("tally").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let e = t.call(TallyOp::Panic).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
        assert_eq!(total(&t), 300);
        // The builder refuses a name twice.
        let e = ManagerServer::builder(key)
            .register("x", Other)
            .register("x", Other)
            .bind("127.0.0.1:0")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        server.shutdown();
    });
}
