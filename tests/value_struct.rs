//! `Value` and `Array` of a caller's `#[repr(C)]` plain-data struct
//! (`Structure<T>` over `bytemuck::Pod`), across processes (issue 8,
//! item 12).

use bytemuck::{Pod, Zeroable};
use multiproc::codec;
use multiproc::value::{Array, RawValue, Structure, Value};
use multiproc_testkit::{serial_shm_checked, Kid};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Point {
    x: i64,
    y: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Small {
    tag: u8,
    flags: [u8; 3],
    count: u16,
    level: i16,
}

const N: i64 = 5_000;

fn step(p: Value<Structure<Point>>) -> i64 {
    for _ in 0..N {
        let mut g = p.lock().unwrap();
        g.x += 1;
        g.y -= 1;
    }
    N
}

#[test]
fn a_struct_value_is_updated_exactly_by_several_processes() {
    let _s = serial_shm_checked();
    let p = Value::new(Structure(Point { x: 0, y: 0 })).unwrap();
    let kids: Vec<_> = (0..2).map(|_| Kid::spawn(step, p.clone())).collect();
    for k in kids {
        assert_eq!(k.join(), N);
    }
    assert_eq!(
        p.get().0,
        Point {
            x: 2 * N,
            y: -2 * N
        }
    );
}

/// Writes points whose fields are equal, as fast as it can.
fn write_diagonal(p: Value<Structure<Point>>) -> i64 {
    for i in 0..N * 4 {
        p.set(Structure(Point { x: i, y: i }));
    }
    N * 4
}

#[test]
fn get_and_set_of_a_struct_value_are_never_torn() {
    let _s = serial_shm_checked();
    let p = Value::new(Structure(Point { x: -1, y: -1 })).unwrap();
    let writer = Kid::spawn(write_diagonal, p.clone());
    let mut reads = 0u64;
    loop {
        let seen = p.get();
        assert_eq!(seen.x, seen.y, "a torn read: {seen:?}");
        reads += 1;
        if seen.x == N * 4 - 1 {
            break;
        }
    }
    assert_eq!(writer.join(), N * 4);
    assert!(reads > 0);
}

fn fill_points((a, from): (Array<Structure<Small>>, usize)) -> usize {
    for i in (from..a.len()).step_by(2) {
        let s = Small {
            tag: i as u8,
            flags: [1, 2, 3],
            count: i as u16 * 3,
            level: -(i as i16),
        };
        a.set(i, Structure(s)).unwrap();
    }
    a.len()
}

#[test]
fn struct_arrays_are_shared_and_checked_on_attach() {
    let _s = serial_shm_checked();
    let a = Array::<Structure<Small>>::new(10).unwrap();
    assert_eq!(a.get(3).unwrap(), Structure::default());
    let kids: Vec<_> = (0..2)
        .map(|from| Kid::spawn(fill_points, (a.clone(), from)))
        .collect();
    for k in kids {
        assert_eq!(k.join(), 10);
    }
    for (i, s) in a.to_vec().into_iter().enumerate() {
        assert_eq!(
            s.0,
            Small {
                tag: i as u8,
                flags: [1, 2, 3],
                count: i as u16 * 3,
                level: -(i as i16)
            }
        );
    }
    assert!(a.get(10).is_err());
    // A handle re-attaches as the same struct type, not as another of
    // another size or as a primitive.
    let bytes = codec::encode(&a).unwrap();
    let again: Array<Structure<Small>> = codec::decode(&bytes).unwrap();
    assert_eq!(again.get(9).unwrap().0.level, -9);
    assert!(codec::decode::<Array<Structure<Point>>>(&bytes).is_err());
    assert!(codec::decode::<Array<u64>>(&bytes).is_err());
    // Without a lock, too.
    let raw = RawValue::new(Structure(Point { x: 3, y: 4 })).unwrap();
    raw.set(Structure(Point { x: 5, y: 6 }));
    assert_eq!(raw.get().0, Point { x: 5, y: 6 });
}
