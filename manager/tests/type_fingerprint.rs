//! Named and shared objects carry a fingerprint of their Rust types: a proxy
//! of other types is refused with `InvalidArgument`, never handed a value of
//! one type decoded as another.

use std::time::Duration;

use multiproc_ipc::codec;
use multiproc_manager::{DictProxy, ErrorKind, Manager, ManagerServer, QueueProxy, RemoteManager};
use multiproc_testkit::{checked, Kid};

const LIMIT: Duration = Duration::from_secs(120);
const KEY: &[u8] = b"type fingerprint key";

fn server() -> ManagerServer {
    ManagerServer::builder(KEY)
        .queue("q")
        .dict("d")
        .lock("l")
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap()
}

/// Runs in a child: takes one item through a proxy of the right types.
fn take_one(q: QueueProxy<i64>) -> i64 {
    q.get_timeout(Duration::from_secs(20)).unwrap()
}

#[test]
fn a_remote_queue_of_i64_is_not_read_as_u64() {
    checked(LIMIT, || {
        let s = server();
        let master = RemoteManager::connect(s.local_addr(), KEY).unwrap();
        let q = master.queue::<i64>("q").unwrap();
        q.put(-5).unwrap();
        q.put(-6).unwrap();

        // Another client asks for the queue with other types.
        let worker = RemoteManager::connect(s.local_addr(), KEY).unwrap();
        let e = worker.queue::<u64>("q").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("\"q\" is a queue of i64, not of u64"),
            "{text}"
        );
        // Also as a joinable or LIFO queue: the same item type is checked.
        assert_eq!(
            worker.lifo_queue::<u64>("q").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );

        // A proxy decoded as other types is refused at its first call, and
        // the refused get takes nothing.
        let wrong: QueueProxy<u64> = codec::decode(&codec::encode(&q).unwrap()).unwrap();
        let e = wrong.get().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(q.qsize().unwrap(), 2);

        // Proxies of the right types work, here and in a child process.
        assert_eq!(worker.queue::<i64>("q").unwrap().get().unwrap(), -5);
        let kid = Kid::spawn(take_one, q.clone());
        assert_eq!(kid.join(), -6);
        s.shutdown();
    });
}

#[test]
fn the_first_typed_lookup_fixes_the_types_of_a_named_dict() {
    checked(LIMIT, || {
        let s = server();
        let r = RemoteManager::connect(s.local_addr(), KEY).unwrap();
        // A lookup of another kind fixes nothing.
        assert_eq!(
            r.queue::<u8>("d").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            r.queue::<u8>("l").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let d = r.dict::<String, i64>("d").unwrap();
        d.insert(&"count".to_string(), &-5).unwrap();
        let e = r.dict::<String, u64>("d").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("dict of (String, i64)"), "{e}");
        let e = r.dict::<u32, i64>("d").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(
            r.dict::<String, i64>("d").unwrap().get("count").unwrap(),
            Some(-5)
        );
        // The lock is still a lock.
        assert!(r.lock("l").unwrap().acquire().is_ok());
        s.shutdown();
    });
}

#[test]
fn local_proxies_decoded_as_other_types_are_refused() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let q = m.queue::<i64>().unwrap();
        q.put(-5).unwrap();
        let wrong: QueueProxy<u64> = codec::decode(&codec::encode(&q).unwrap()).unwrap();
        let e = wrong.try_get().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("queue of i64, not of u64"), "{e}");
        assert_eq!(wrong.put(5).unwrap_err().kind(), ErrorKind::InvalidArgument);

        let d = m.dict_from([("count".to_string(), -5i64)]).unwrap();
        let wrong: DictProxy<String, u64> = codec::decode(&codec::encode(&d).unwrap()).unwrap();
        assert_eq!(
            wrong.get("count").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let v = m.value(-5i64).unwrap();
        let wrong: multiproc_manager::ValueProxy<u64> =
            codec::decode(&codec::encode(&v).unwrap()).unwrap();
        assert_eq!(wrong.get().unwrap_err().kind(), ErrorKind::InvalidArgument);

        // Nothing was taken or changed, and the right types still work in
        // a child process.
        assert_eq!(d.get("count").unwrap(), Some(-5));
        assert_eq!(v.get().unwrap(), -5);
        let kid = Kid::spawn(take_one, q.clone());
        assert_eq!(kid.join(), -5);
        m.shutdown().unwrap();
    });
}
