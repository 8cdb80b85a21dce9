//! Hostile and unusual input found in review: each test pins one fix.
//! Every wait is bounded (`common::TIMEOUT`, or a short read timeout).

mod common;

use std::io::Write;

use common::{read_response, Server};

const CONFIG: &str = r#"
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    methods GET HEAD;
}
"#;

/// A chunk size near `u64::MAX` after some data must not overflow the
/// body-limit arithmetic (a panic would take the whole server down).
#[test]
fn huge_chunk_size_after_data_is_413_and_the_server_lives() {
    let s = Server::start(CONFIG, &[("www/index.html", b"home")]);
    let mut stream = s.connect();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
              1\r\na\r\nFFFFFFFFFFFFFFFF\r\n",
        )
        .expect("send");
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 413);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"home");
}
