#![no_main]
//! `webserv::props::chunked` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::chunked(data));
