//! The YAML reader and the policy parser on arbitrary text: nothing panics,
//! and a policy that does not parse gets at least one problem, each with a
//! line inside the text and a one-line message that names it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines are counted from 1, as YAML breaks them (`\r\n`, `\n` or a bare
    // `\r`); a problem at the end of the text may name the line after its
    // last break.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    if let Err(e) = tollgate::policy::yaml::parse(text) {
        let shown = e.to_string();
        let line: usize = shown
            .strip_prefix("line ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a YAML error without a line: {shown}"));
        assert!(
            (1..=lines).contains(&line),
            "YAML error at line {line} of {lines}"
        );
    }
    if let Err(problems) = tollgate::policy::parse(text, std::path::Path::new(".")) {
        assert!(!problems.0.is_empty(), "a refused policy with no problem");
        for p in &problems.0 {
            let line = p.line.unwrap_or_else(|| panic!("no line: {}", p.message));
            assert!(
                (1..=lines).contains(&line),
                "line {line} of {lines}: {}",
                p.message
            );
            assert!(!p.message.is_empty(), "an empty message at line {line}");
            assert!(
                !p.message.contains('\n'),
                "a message of several lines: {:?}",
                p.message
            );
        }
    }
});
