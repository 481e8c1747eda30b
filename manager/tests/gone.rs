//! A manager that has gone away is named in the error: its pid for a local
//! manager, its address for a remote one, never a channel.

use std::time::Duration;

use multiproc_manager::{ErrorKind, Manager, ManagerServer, RemoteManager};
use multiproc_testkit::{bounded, checked, kill_pid, wait_gone};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_killed_local_manager_is_named_by_its_pid() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let pid = m.pid();
        let gone = format!("manager (pid {pid}) is gone");
        let d = m.dict::<String, i64>().unwrap();
        d.insert(&"k".into(), &1).unwrap();
        let q = m.queue::<u8>().unwrap();
        // One client blocked in a call when the manager dies.
        let waiter = std::thread::spawn(move || q.get());
        std::thread::sleep(Duration::from_millis(100));
        kill_pid(pid);
        let e = bounded(Duration::from_secs(20), move || waiter.join().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        assert!(e.to_string().contains(&gone), "{e}");
        assert!(!e.to_string().contains("channel"), "{e}");
        // A call on a connection opened before the death, and one on a new
        // connection (another thread).
        let e = d.len().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        assert!(e.to_string().contains(&gone), "{e}");
        let d2 = d.clone();
        let e = bounded(Duration::from_secs(20), move || d2.len().unwrap_err());
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        assert!(e.to_string().contains(&gone), "{e}");
        m.shutdown().unwrap();
        assert!(wait_gone(pid));
    });
}

#[test]
fn a_shut_down_local_manager_is_named_by_its_pid() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let pid = m.pid();
        let v = m.value(1u8).unwrap();
        assert_eq!(v.get().unwrap(), 1);
        m.shutdown().unwrap();
        let e = v.get().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        assert!(
            e.to_string()
                .contains(&format!("manager (pid {pid}) is gone")),
            "{e}"
        );
    });
}

#[test]
fn a_gone_remote_manager_is_named_by_its_address() {
    checked(LIMIT, || {
        let server = ManagerServer::builder(b"gone key")
            .dict("d")
            .quiet(true)
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.local_addr().to_string();
        let remote = RemoteManager::connect(server.local_addr(), b"gone key").unwrap();
        let d = remote.dict::<u8, u8>("d").unwrap();
        d.insert(&1, &2).unwrap();
        drop(server);
        let e = d.get(&1).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("manager at {addr} is gone")),
            "{text}"
        );
        assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    });
}
