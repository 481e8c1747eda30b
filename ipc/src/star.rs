//! [`StarFn`]: functions of one to six arguments called with a tuple
//! (Python's `starmap` and `apply(f, args)`), sent to forked processes.

use crate::sys::zst;
use crate::zygote::FnRef;

/// A function of one to six arguments, `fn(A, B, ...) -> R`, that can be
/// called with the tuple `Args = (A, B, ...)` in a forked process.
///
/// Implemented for fn items and non-capturing closures of up to six
/// arguments. A capturing closure (or a fn pointer) does not compile when
/// used through it: a task carries no code and no captured state, only a
/// reference to the function.
///
/// # Examples
///
/// ```
/// use multiproc::{codec, StarFn};
///
/// fn volume(l: u32, w: u32, h: u32) -> u32 { l * w * h }
///
/// let f = volume.into_fn_ref();
/// let bytes = codec::encode(&f).unwrap();
/// let g: multiproc::FnRef<(u32, u32, u32), u32> = codec::decode(&bytes).unwrap();
/// assert_eq!(g.call((2, 3, 4)).unwrap(), 24);
/// ```
///
/// A closure that captures is refused when the task is built:
///
/// ```compile_fail
/// use multiproc::StarFn;
///
/// let k = 3u32;
/// let scale = move |x: u32, y: u32| (x + y) * k;
/// let _ = scale.into_fn_ref();
/// ```
pub trait StarFn<Args>: Copy + Send + 'static {
    /// What the function returns.
    type Output;

    /// A reference to a function of the tuple that calls this one.
    fn into_fn_ref(self) -> FnRef<Args, Self::Output>;
}

macro_rules! star_fn {
    ($($a:ident),+) => {
        impl<F, R, $($a),+> StarFn<($($a,)+)> for F
        where
            F: Fn($($a),+) -> R + Copy + Send + 'static,
            R: 'static,
            $($a: 'static),+
        {
            type Output = R;

            fn into_fn_ref(self) -> FnRef<($($a,)+), R> {
                #[allow(non_snake_case)]
                fn spread<F, R, $($a),+>(($($a,)+): ($($a,)+)) -> R
                where
                    F: Fn($($a),+) -> R + Copy + 'static,
                {
                    zst::conjure::<F>()($($a),+)
                }
                FnRef::new(spread::<F, R, $($a),+>)
            }
        }
    };
}

star_fn!(A);
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);
