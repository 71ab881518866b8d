//! Any text a client may send on the signalling socket: the parser answers
//! every frame with a message or a refusal, never a panic, and whatever it
//! accepts as a message it accepted within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staffroom::rooms::protocol::{parse, ErrorCode, MAX_MESSAGE_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Ok(_) => assert!(text.len() <= MAX_MESSAGE_BYTES),
        Err((code, message)) => {
            assert!(!message.is_empty(), "a refusal says what is wrong");
            if text.len() > MAX_MESSAGE_BYTES {
                assert_eq!(code, ErrorCode::TooLarge);
            }
        }
    }
});
