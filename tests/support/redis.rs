//! A real `redis-server` for the tests that need one (`tests/run.sh` installs Debian's).
//! Those tests run with the feature `test-redis` (a plain `cargo test` skips them).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` on a free loopback port, with an append-only file so a restart keeps
/// the streams and the counter. Killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Settings given after the defaults (a later one wins).
    extra: Vec<String>,
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with `args` after the defaults, e.g. `["--appendfsync", "everysec"]`
    /// for a test that writes much and never restarts the server.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port: free_port(),
            dir,
            child: None,
            extra: args.iter().map(|a| a.to_string()).collect(),
        };
        // A port found free may be taken before redis-server binds it (tests and
        // benchmarks start servers concurrently): then take another one.
        for _ in 0..5 {
            match server.try_spawn() {
                Ok(()) => return server,
                Err(why) => {
                    eprintln!("redis-server on port {}: {why}; another port", server.port);
                    server.port = free_port();
                }
            }
        }
        panic!("redis-server did not start");
    }

    /// Starts the server (again, after [`stop`](Self::stop)) on the same port and files.
    pub fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!(
                "redis-server did not start again on port {}: {why}",
                self.port
            );
        }
    }

    /// Starts redis-server and waits until it answers on the port: this very process,
    /// not another server that took the port first.
    fn try_spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            // Small stream nodes, so that `MAXLEN ~` trims in small steps.
            .args(["--stream-node-max-entries", "10"])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (tests/run.sh installs it)");
        for _ in 0..500 {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("it exited ({status})"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.process_id() == Some(child.id())
            {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("it did not answer within 5 s".to_owned())
    }

    /// The process id of the server answering on the port.
    fn process_id(&self) -> Option<u32> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "info", "server"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let info = String::from_utf8(output.stdout).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A connection of the `redis` crate to the server, for tests that look into it.
    #[cfg(feature = "redis")]
    pub fn connection(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .expect("a connection to the test's redis-server")
    }

    /// Every entry of the stream at `key`, oldest first: its id (the number before the
    /// dash) and its event frame (field `e`).
    #[cfg(feature = "redis")]
    pub fn stored(&self, key: &str) -> Vec<(u64, String)> {
        use ::redis::Value;
        let text = |value: &Value| match value {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
            other => panic!("not a string: {other:?}"),
        };
        let reply: Value = ::redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut self.connection())
            .unwrap();
        let Value::Array(entries) = reply else {
            panic!("XRANGE answered {reply:?}");
        };
        entries
            .iter()
            .map(|entry| {
                let Value::Array(parts) = entry else {
                    panic!("an entry: {entry:?}")
                };
                let Value::Array(fields) = &parts[1] else {
                    panic!("fields: {parts:?}")
                };
                let id = text(&parts[0]).split('-').next().unwrap().parse().unwrap();
                let frame = fields
                    .chunks(2)
                    .find(|kv| text(&kv[0]) == "e")
                    .map(|kv| text(&kv[1]))
                    .expect("an event frame");
                (id, frame)
            })
            .collect()
    }

    /// Kills the server (`SIGKILL`: nothing is saved on the way out) and waits for it
    /// to exit; [`spawn`](Self::spawn) starts it again on the same port and files.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Shuts the server down cleanly (`redis-cli shutdown`) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "shutdown"])
                .status();
            if child.wait().is_err() {
                let _ = child.kill();
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
