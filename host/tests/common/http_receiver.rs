//! A real HTTP server on 127.0.0.1 that takes POSTs (a webhook's receiver):
//! it answers the first `fail_first` requests with 500, then 200, and keeps
//! every body it was sent, answered or not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Receiver {
    pub url: String,
    /// Each request's body, with the status it was answered.
    pub got: Arc<Mutex<Vec<(u16, String)>>>,
}

impl Receiver {
    pub fn start(path: &str, fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
        let got2 = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                // One request per connection is all a webhook sender needs; keep-alive is answered with close.
                let mut length = 0usize;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let mut g = got2.lock().unwrap();
                let status = if g.len() < fail_first { 500 } else { 200 };
                g.push((status, String::from_utf8_lossy(&body).into_owned()));
                drop(g);
                let reason = if status == 200 { "OK" } else { "Internal Server Error" };
                let _ = write!(stream, "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Receiver { url, got }
    }

    /// The bodies answered 200, parsed.
    pub fn taken(&self) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().iter().filter(|(s, _)| *s == 200).map(|(_, b)| serde_json::from_str(b).unwrap()).collect()
    }
}
