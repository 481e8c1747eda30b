//! Values of zero-sized function types (fn items and non-capturing closures).

/// The value of the zero-sized function type `F`.
///
/// Callers only instantiate it with types that implement one of the `Fn`
/// traits (see `crate::star`). Fails to compile (post-monomorphization) for
/// a type that is not zero-sized, such as a capturing closure.
pub(crate) fn conjure<F: Copy + 'static>() -> F {
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: `F` is zero-sized (asserted above), so a value of it holds no
    // bytes. On stable Rust only fn items and closures implement the `Fn`
    // traits, which is what every caller requires of `F`; a zero-sized one
    // is a fn item or a closure that captures nothing. Such types have no
    // invariant beyond being their type, and all their values are the same
    // value: the one the caller's process was given.
    unsafe { std::mem::zeroed::<F>() }
}
