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
        "sweep" => {
            // This process's first region: creating it sweeps stale segments.
            drop(ShmRegion::create(8).unwrap());
            println!("swept");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn the_next_run_sweeps_regions_and_payload_blocks_of_dead_processes() {
    // A pid that is certainly dead (reaped), and ours, which is alive.
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let me = std::process::id();
    let salt = format!("{:x}", me ^ 0x5eed);
    let region = format!("mp-{dead}-0-{salt}");
    // A pool's payload block: `mpp-<pool pid>-<maker pid>-<n>`.
    let dead_pools_block = format!("mpp-{dead}-{dead}-{salt}");
    // A block made by a worker that died, for a pool that lives: its pool
    // may still read it.
    let live_pools_block = format!("mpp-{me}-{dead}-{salt}");
    for name in [&region, &dead_pools_block, &live_pools_block] {
        std::fs::write(format!("/dev/shm/{name}"), b"x").unwrap();
    }
    let out = run_role("sweep", "", Duration::from_secs(60));
    assert!(out.contains("swept"), "{out}");
    let exists = |name: &str| std::path::Path::new(&format!("/dev/shm/{name}")).exists();
    let left = (
        exists(&region),
        exists(&dead_pools_block),
        exists(&live_pools_block),
    );
    let _ = std::fs::remove_file(format!("/dev/shm/{live_pools_block}"));
    assert_eq!(
        left,
        (false, false, true),
        "(region, dead pool's block, live pool's block)"
    );
}

#[test]
fn block_written_by_one_process_is_read_by_another() {
    let _s = multiproc_testkit::serial_shm_checked();
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
    let _s = multiproc_testkit::serial_shm_checked();
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
    let _s = multiproc_testkit::serial_shm_checked();
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
    let _s = multiproc_testkit::serial_shm_checked();
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
    let _s = multiproc_testkit::serial_clean();
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

fn read_generated(block: SharedMemory) -> (bool, Vec<u8>) {
    (block.is_owner(), block.as_slice()[..4].to_vec())
}

/// Issue 8, item 11: a block created without a name gets a unique one,
/// other processes attach to it, and it is unlinked with its owner.
#[test]
fn a_block_created_without_a_name_gets_a_unique_one() {
    let _s = multiproc_testkit::serial_clean();
    let mut a = SharedMemory::new(64).unwrap();
    let b = SharedMemory::new(64).unwrap();
    assert!(a.name().starts_with("/psm_"), "{}", a.name());
    assert_ne!(a.name(), b.name());
    assert!(a.is_owner() && in_dev_shm(a.name()));
    assert_eq!(a.size(), 64);
    a.write_at(0, b"abcd").unwrap();
    // A forked child attaches (the handle travels as its name).
    let seen =
        multiproc_testkit::Kid::spawn(read_generated, SharedMemory::attach(a.name()).unwrap())
            .join();
    assert_eq!(seen, (false, b"abcd".to_vec()));
    // So does an unrelated process.
    let out = run_role("read", a.name(), Duration::from_secs(30));
    assert!(out.contains("abcd"), "{out}");
    assert!(SharedMemory::new(0).is_err());
    let (na, nb) = (a.name().to_owned(), b.name().to_owned());
    drop((a, b));
    assert!(!in_dev_shm(&na) && !in_dev_shm(&nb));
}

fn open_or_create_then_meet((name, b): (String, multiproc::Barrier)) -> bool {
    let block = SharedMemory::open_or_create(&name, 128).unwrap();
    // Everyone has opened before anyone drops (an owner that left early
    // would let a later process create the block anew).
    b.wait_timeout(multiproc_testkit::LIMIT).unwrap();
    block.is_owner()
}

/// `open_or_create` attaches to an existing block, creates a missing one,
/// and among racing processes exactly one creates it.
#[test]
fn open_or_create_attaches_or_creates_and_one_racer_creates() {
    let _s = multiproc_testkit::serial_clean();
    let name = format!("ooc-test-{}", std::process::id());
    let mut first = SharedMemory::open_or_create(&name, 64).unwrap();
    assert!(first.is_owner());
    first.write_at(0, b"xy").unwrap();
    let second = SharedMemory::open_or_create(&name, 32).unwrap();
    assert!(!second.is_owner());
    assert_eq!((second.size(), &second.as_slice()[..2]), (64, &b"xy"[..]));
    // An existing block smaller than asked for is an error.
    let e = SharedMemory::open_or_create(&name, 65).unwrap_err();
    assert_eq!(e.kind(), multiproc::ErrorKind::InvalidArgument, "{e}");
    drop((first, second));
    assert!(!in_dev_shm(&name));

    let racers = 8;
    let b = multiproc::Barrier::new(racers).unwrap();
    let kids: Vec<_> = (0..racers)
        .map(|_| multiproc_testkit::Kid::spawn(open_or_create_then_meet, (name.clone(), b.clone())))
        .collect();
    let owners = kids
        .into_iter()
        .map(multiproc_testkit::Kid::join)
        .filter(|&o| o)
        .count();
    assert_eq!(owners, 1);
    assert!(wait_until(Duration::from_secs(10), || !in_dev_shm(&name)));
}
