//! The YAML reader and the policy parser on arbitrary text: every problem
//! is reported (with a line where the text has one), nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tollgate::policy::yaml::parse(text);
    let _ = tollgate::policy::parse(text, std::path::Path::new("."));
});
