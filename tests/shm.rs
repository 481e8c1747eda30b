//! Named shared memory across unrelated processes, and its cleanup.
//!
//! "Another process" here is this test binary run again with a role in the
//! environment (`MP_SHM_ROLE`): a real, unrelated process that attaches by name.

use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::shm::{SharedMemory, ShmRegion};
use multiproc_testkit::{in_dev_shm, wait_until, Helper, Reexec};

const ROLE: &str = "MP_SHM_ROLE";
const NAME: &str = "MP_SHM_NAME";

/// Runs this binary's `child_entry` test with a role (killed if dropped
/// before it exits).
fn spawn_role(role: &str, name: &str) -> Helper {
    Reexec::test("child_entry")
        .env(ROLE, role)
        .env(NAME, name)
        .spawn()
}

/// Runs a role to its end, within `limit`; returns its stdout.
fn run_role(role: &str, name: &str, limit: Duration) -> String {
    let (status, out) = spawn_role(role, name).output(limit);
    assert!(status.success(), "child failed: {status:?}\n{out}");
    out
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
    let out = run_role("read", &name, Duration::from_secs(30));
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
    let mut child = spawn_role("own-and-hang", &name);
    // Wait for the child to report its region name (it created both by then;
    // libtest may print "test child_entry ... " on the same line first).
    let region = child
        .read_line("region:", Duration::from_secs(30))
        .trim()
        .to_owned();
    assert!(in_dev_shm(&name) && in_dev_shm(&region));
    child.kill(); // SIGKILL
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
    run_role(
        "region-add",
        file.to_str().unwrap(),
        Duration::from_secs(30),
    );
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
