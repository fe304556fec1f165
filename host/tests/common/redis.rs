#![allow(dead_code)]
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

/// A free port of 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> Redis {
        Redis::start_on(free_port(), &[])
    }

    /// Starts a server on `port` (e.g. again after a kill), with `extra` arguments.
    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--enable-debug-command", "local"])
            .args(extra)
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

    /// Sends many commands on one connection (pipelined) and waits for
    /// their replies; panics on an error reply.
    pub fn pipeline(&self, commands: &[Vec<String>]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = Vec::new();
        for args in commands {
            req.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
        s.write_all(&req).unwrap();
        let mut r = BufReader::new(s);
        for _ in commands {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(!line.starts_with('-'), "redis said {line}");
            // Bulk and array replies are not used by the callers (SET, HSET, DEL).
        }
    }

    /// Sets each key to its value (strings).
    pub fn set_all<K: AsRef<str>, V: AsRef<str>>(&self, pairs: impl IntoIterator<Item = (K, V)>) {
        let commands: Vec<Vec<String>> = pairs.into_iter().map(|(k, v)| vec!["SET".into(), k.as_ref().into(), v.as_ref().into()]).collect();
        for chunk in commands.chunks(10_000) {
            self.pipeline(chunk);
        }
    }

    /// The server's process id (for its memory and CPU time in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A Redis Cluster of `n` masters (no replicas) on 127.0.0.1, stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let nodes: Vec<Redis> = (0..n)
            .map(|_| {
                let port = free_port();
                let conf = format!("{d}/nodes-{port}.conf");
                Redis::start_on(port, &["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--dir", &d])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|r| format!("127.0.0.1:{}", r.port)).collect();
        let out = Command::new("redis-cli").arg("--cluster").arg("create").args(&addrs).args(["--cluster-replicas", "0", "--cluster-yes"]).output().unwrap();
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let until = Instant::now() + Duration::from_secs(30);
        for r in &nodes {
            loop {
                let info = Command::new("redis-cli").args(["-p", &r.port.to_string(), "cluster", "info"]).output().unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < until, "the cluster did not settle");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes, _dir: dir }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|r| r.url.clone()).collect()
    }

    /// Sets each key to its value through the cluster (redis-cli follows the
    /// redirections to each key's node). Values must not hold a single quote.
    pub fn set_all(&self, pairs: &[(String, String)]) {
        let mut cli = Command::new("redis-cli")
            .args(["-c", "-p", &self.nodes[0].port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = String::new();
        for (k, v) in pairs {
            input.push_str(&format!("SET {k} '{v}'\n"));
        }
        cli.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = cli.wait_with_output().unwrap();
        let replies = String::from_utf8_lossy(&out.stdout);
        assert_eq!(replies.lines().filter(|l| *l == "OK").count(), pairs.len(), "{replies}");
    }
}
