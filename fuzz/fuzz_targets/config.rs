#![no_main]
//! `webserv::props::config` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::config(data));
