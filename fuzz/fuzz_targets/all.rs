#![no_main]
//! Every target in one binary, the one `scripts/fuzz` builds: one link instead of one per
//! target (each a thin-LTO link of the whole gateway). `FUZZ_TARGET` names the target.
use std::sync::LazyLock;

static TARGET: LazyLock<fn(&[u8])> = LazyLock::new(|| {
    let name = std::env::var("FUZZ_TARGET").unwrap_or_default();
    gateway_fuzz::target(&name).unwrap_or_else(|| {
        eprintln!("FUZZ_TARGET must name one of {:?}", gateway_fuzz::TARGETS);
        std::process::exit(2)
    })
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET(data));
