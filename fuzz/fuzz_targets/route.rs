#![no_main]
//! `webserv::props::route` on arbitrary bytes (a URL line, then a configuration).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::route(data));
