#![no_main]
//! `webserv::props::path_normalize` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::path_normalize(data));
