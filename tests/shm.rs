//! Named shared memory across unrelated processes, and its cleanup.
//!
//! "Another process" here is this test binary run again with a role in the
//! environment (`MP_SHM_ROLE`): a real, unrelated process that attaches by name.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::shm::{SharedMemory, ShmRegion};

const ROLE: &str = "MP_SHM_ROLE";
const NAME: &str = "MP_SHM_NAME";

/// Runs this binary's `child_entry` test with a role; the child is killed if
/// the guard is dropped before it exits.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn spawn(role: &str, name: &str) -> ChildGuard {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(NAME, name)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        ChildGuard(Some(child))
    }

    /// Waits up to `limit` for the child, returning its stdout.
    fn wait(mut self, limit: Duration) -> String {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
                assert!(status.success(), "child failed: {status:?}\n{out}");
                return out;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// The body of the re-executed child; a no-op in a normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).unwrap();
    match role.as_str() {
        "read" => {
            let mut block = SharedMemory::attach(&name).unwrap();
            let text = std::str::from_utf8(&block.as_slice()[..11])
                .unwrap()
                .to_owned();
            block.write_at(11, b"!").unwrap();
            println!("read:{text}");
        }
        "own-and-hang" => {
            let mut block = SharedMemory::create(&name, 4096).unwrap();
            let region = ShmRegion::create(4096).unwrap();
            println!("region:{}", region.name().unwrap());
            block.write_at(0, b"x").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "region-add" => {
            let bytes = std::fs::read(&name).unwrap();
            let region: ShmRegion = multiproc::codec::decode(&bytes).unwrap();
            region.atomic_u64(8).fetch_add(41, Ordering::SeqCst);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn block_written_by_one_process_is_read_by_another() {
    let name = format!("test-rw-{}", std::process::id());
    let mut block = SharedMemory::create(&name, 64).unwrap();
    block.write_at(0, b"hello world").unwrap();
    let out = ChildGuard::spawn("read", &name).wait(Duration::from_secs(30));
    assert!(out.contains("read:hello world"), "{out}");
    let mut bang = [0u8; 1];
    block.read_at(11, &mut bang).unwrap();
    assert_eq!(&bang, b"!", "the child's write must be visible here");
    assert!(in_dev_shm(&name));
    block.unlink().unwrap();
    assert!(!in_dev_shm(&name), "unlink must remove the name");
    assert!(SharedMemory::attach(&name).is_err());
    // The mapping outlives the name.
    assert_eq!(&block.as_slice()[..5], b"hello");
}

#[test]
fn owner_drop_unlinks_but_attached_handles_do_not() {
    let name = format!("test-drop-{}", std::process::id());
    let owner = SharedMemory::create(&name, 16).unwrap();
    let attached = SharedMemory::attach(&name).unwrap();
    assert!(!attached.is_owner());
    drop(attached);
    assert!(in_dev_shm(&name), "a non-owner drop must not unlink");
    let shared = std::sync::Arc::new(owner);
    let other = shared.clone();
    drop(shared);
    assert!(in_dev_shm(&name), "the owner's handle is still alive");
    drop(other);
    assert!(!in_dev_shm(&name));
}

#[test]
fn segments_of_a_sigkilled_owner_are_removed() {
    let name = format!("test-crash-{}", std::process::id());
    let mut guard = ChildGuard::spawn("own-and-hang", &name);
    let child = guard.0.as_mut().unwrap();
    // Wait for the child to report its region name (it created both by then).
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    // libtest may print "test child_entry ... " on the same line first.
    while !line.contains("region:") {
        line.clear();
        assert!(Instant::now() < deadline, "child never reported");
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "child exited early");
    }
    let region = line.trim().rsplit("region:").next().unwrap().to_owned();
    assert!(in_dev_shm(&name) && in_dev_shm(&region));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !in_dev_shm(&name)
            && !in_dev_shm(&region)),
        "the tracker must unlink a SIGKILLed owner's segments"
    );
}

#[test]
fn region_handle_reattaches_in_another_process() {
    let region = ShmRegion::create(64).unwrap();
    region.atomic_u64(8).store(1, Ordering::SeqCst);
    let file = std::env::temp_dir().join(format!("mp-region-{}", std::process::id()));
    std::fs::write(&file, multiproc::codec::encode(&region).unwrap()).unwrap();
    ChildGuard::spawn("region-add", file.to_str().unwrap()).wait(Duration::from_secs(30));
    let _ = std::fs::remove_file(&file);
    assert_eq!(region.atomic_u64(8).load(Ordering::SeqCst), 42);
    let name = region.name().unwrap().to_owned();
    drop(region);
    assert!(!in_dev_shm(&name));
}

fn drop_inherited_block(name: String) -> bool {
    // The forked child sees the parent's handle (inherited memory) and drops
    // its own attachment; neither may unlink the owner's block.
    let attached = SharedMemory::attach(&name).unwrap();
    assert!(!attached.is_owner());
    drop(attached);
    in_dev_shm(&name)
}

fn drop_inherited_owner_handle(_: ()) -> bool {
    let block = INHERITED.lock().unwrap().take().unwrap();
    let name = block.name().to_owned();
    assert!(!block.is_owner(), "ownership must not cross fork");
    drop(block);
    in_dev_shm(&name)
}

static INHERITED: std::sync::Mutex<Option<std::sync::Arc<SharedMemory>>> =
    std::sync::Mutex::new(None);

#[test]
fn a_forked_child_dropping_an_inherited_handle_does_not_unlink() {
    let name = format!("test-fork-drop-{}", std::process::id());
    let block = std::sync::Arc::new(SharedMemory::create(&name, 32).unwrap());
    *INHERITED.lock().unwrap() = Some(block.clone());
    let p = multiproc::Process::spawn(drop_inherited_owner_handle, ()).unwrap();
    assert!(
        p.join().unwrap(),
        "child saw the block vanish after its drop"
    );
    let p = multiproc::Process::spawn(drop_inherited_block, name.clone()).unwrap();
    assert!(p.join().unwrap());
    assert!(in_dev_shm(&name), "the block must survive children's drops");
    INHERITED.lock().unwrap().take();
    drop(block);
    assert!(!in_dev_shm(&name), "the owner's last drop unlinks");
}
