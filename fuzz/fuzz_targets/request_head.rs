#![no_main]
//! `webserv::props::request_head` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::request_head(data));
