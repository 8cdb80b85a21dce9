#![no_main]
//! `webserv::props::multipart` on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| webserv::props::multipart(data));
