#![no_main]
//! `webserv::props::fmt` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::fmt(data));
