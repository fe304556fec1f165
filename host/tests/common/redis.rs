//! A real redis-server for the tests (Debian's, which scripts/setup.sh
//! installs), on a free port of 127.0.0.1, without persistence, stopped on
//! drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Redis {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server (scripts/setup.sh installs it): {e}"));
        let redis = Redis { child, port, url: format!("redis://127.0.0.1:{port}") };
        let until = Instant::now() + Duration::from_secs(20);
        while redis.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < until, "redis-server on {port} did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// The server's process id (for its memory and CPU time in /proc).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command in the protocol's array form; its reply's first
    /// line (None: no connection).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        Redis::command_on(self.port, args)
    }

    /// [`Redis::command`] to the server on `port` (from another thread).
    pub fn command_on(port: u16, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
