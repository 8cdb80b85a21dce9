#![no_main]
//! `webserv::props::upstream_head` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::upstream_head(data));
