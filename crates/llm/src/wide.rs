//! The one run-time check behind the engine's "same code, wider vectors" builds.
//!
//! The baseline build targets x86-64's SSE2. Loops whose results must stay bit-identical
//! to the portable code (attention, activation quantisation) are compiled a second time
//! with `#[target_feature(enable = "avx2,avx512f,avx512bw")]`: the compiler neither
//! reorders float sums nor fuses a multiply and an add, so the results are the same
//! with more lanes per instruction. [`dispatched!`](dispatched) defines such a function:
//! the one place that checks [`available`] and enters the wider build (the integer
//! kernels in `prefill_avx512` and `weights` need further features and keep their own
//! checks).

/// Whether this CPU has AVX2, AVX-512F and AVX-512BW (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn available() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
    })
}

/// `fn NAME(ARGS) => BODY;` defines `NAME`, which runs `BODY` (an `#[inline(always)]`
/// function taking `ARGS`) built for AVX2 and AVX-512 when the CPU has them
/// ([`available`]), and its baseline build otherwise. Attributes and doc comments before
/// `fn` go on `NAME`.
macro_rules! dispatched {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident;
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,avx512f,avx512bw")]
                #[allow(clippy::too_many_arguments)]
                fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if $crate::wide::available() {
                    // SAFETY: `available` checked at run time that the CPU has the
                    // features `wide` is compiled for; it has no other precondition.
                    #[allow(unsafe_code)]
                    unsafe {
                        return wide($($arg),*);
                    }
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatched;
