//! A real PostgreSQL server for the tests (Debian's, which scripts/setup.sh
//! installs): a fresh cluster in a temporary directory, on a free port of
//! 127.0.0.1, trust authentication, stopped on drop. The server refuses to
//! run as root, so as root it runs as the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub url: String,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The server's binaries: the newest /usr/lib/postgresql/N/bin.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap_or_else(|e| panic!("/usr/lib/postgresql (scripts/setup.sh installs PostgreSQL): {e}"))
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server under /usr/lib/postgresql")
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { bin: bin_dir(), port, url: format!("postgres://streamhost@127.0.0.1:{port}/postgres"), dir };
        if is_root() {
            assert!(Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.dir.path()).status().unwrap().success());
        }
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", path(&data), "-A", "trust", "-U", "streamhost"]);
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", path(pg.dir.path()));
        let log = pg.dir.path().join("log");
        pg.run("pg_ctl", &["-D", path(&data), "-o", &opts, "-l", path(&log), "-w", "start"]);
        pg
    }

    /// One of the server's programs, run as `postgres` when root.
    fn program(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if !is_root() {
            return Command::new(exe);
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    }

    /// Runs one of the server's programs, which must succeed.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self.program(program).args(args).current_dir(self.dir.path()).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `sql` through psql, which must succeed.
    pub fn sql(&self, sql: &str) {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "streamhost", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.program("pg_ctl").args(["-D", path(&data), "-m", "immediate", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
