//! Dict keys by any borrowed form of `K` (the `Borrow<Q>` pattern of
//! `HashMap`), on a local and on a remote manager.

use std::time::Duration;

use multiproc_manager::{DictProxy, ErrorKind, Manager, ManagerServer, RemoteManager};
use multiproc_testkit::checked;

const LIMIT: Duration = Duration::from_secs(120);

fn string_keys(d: &DictProxy<String, i64>) {
    d.insert(&"count".to_string(), &10).unwrap();
    assert_eq!(d.get("count").unwrap(), Some(10));
    assert_eq!(d.get("absent").unwrap(), None);
    assert!(d.contains_key("count").unwrap());
    assert!(!d.contains_key("absent").unwrap());
    // The owned form still works.
    assert_eq!(d.get(&"count".to_string()).unwrap(), Some(10));
    assert_eq!(d.remove("count").unwrap(), Some(10));
    assert_eq!(d.remove("count").unwrap(), None);
    d.insert(&"n".to_string(), &1).unwrap();
    assert_eq!(d.pop("n").unwrap(), 1);
    assert_eq!(d.pop("n").unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn str_keys_find_string_keys_and_slices_find_vec_keys() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let d = m.dict::<String, i64>().unwrap();
        string_keys(&d);
        assert_eq!(d.update_with("hits", |c| c.unwrap_or(0) + 1).unwrap(), 1);
        assert_eq!(d.update_with("hits", |c| c.unwrap_or(0) + 1).unwrap(), 2);
        // The entry made through a &str is the one a String finds.
        assert_eq!(d.get(&"hits".to_string()).unwrap(), Some(2));
        assert_eq!(d.keys().unwrap(), ["hits"]);

        let v = m.dict_from([(vec![1u8, 2, 3], 'x')]).unwrap();
        let key: &[u8] = &[1, 2, 3];
        assert_eq!(v.get(key).unwrap(), Some('x'));
        assert!(v.contains_key(key).unwrap());
        assert_eq!(v.update_with(key, |_| 'y').unwrap(), 'y');
        assert_eq!(v.remove(key).unwrap(), Some('y'));
        assert!(v.is_empty().unwrap());
        m.shutdown().unwrap();
    });
}

#[test]
fn borrowed_keys_work_on_a_remote_dict() {
    checked(LIMIT, || {
        let server = ManagerServer::builder(b"borrowed keys")
            .dict("d")
            .quiet(true)
            .bind("127.0.0.1:0")
            .unwrap();
        let remote = RemoteManager::connect(server.local_addr(), b"borrowed keys").unwrap();
        string_keys(&remote.dict::<String, i64>("d").unwrap());
        server.shutdown();
    });
}
