//! Chain answers are untrusted: `get_neurons_lite` answers, runtime metadata and dynamic
//! SCALE values decoded through a type registry must never panic or allocate beyond the
//! input. The first byte picks the decoder.
#![no_main]

use std::sync::OnceLock;

use attesta_bittensor::chain::metadata::Metadata;
use attesta_bittensor::chain::neurons::decode_neurons;
use attesta_bittensor::chain::standin::runtime::devnet_metadata;
use attesta_bittensor::chain::value;
use libfuzzer_sys::fuzz_target;

fn registry() -> Option<&'static Metadata> {
    static M: OnceLock<Option<Metadata>> = OnceLock::new();
    M.get_or_init(|| Metadata::decode(&devnet_metadata()).ok())
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let _ = decode_neurons(rest);
        }
        1 => {
            if let Ok(m) = Metadata::decode(rest) {
                for p in m.pallets() {
                    for e in &p.storage {
                        let _ = m.decode_storage(&p.name, &e.name, None);
                    }
                    for c in &p.constants {
                        let _ = m.constant_value(&p.name, &c.name);
                    }
                }
            }
        }
        _ => {
            // Every type of the devnet registry, fed the rest of the input.
            if let Some(m) = registry() {
                let n = u32::try_from(m.types().types.len()).unwrap_or(0);
                if let Some((&t, bytes)) = rest.split_first()
                    && n > 0
                {
                    let _ = value::decode_all(m.types(), u32::from(t) % n, bytes);
                }
            }
        }
    }
});
