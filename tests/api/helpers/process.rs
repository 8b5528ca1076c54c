//! The real `switchboard` binary as a child process: started on a configuration file (in the
//! file's directory, so that nothing it creates lands in the project), its log, its memory, and
//! `kill -9`.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

/// Writes a configuration file `file` in `dir` for a gateway on the database `url` (listening on a
/// free port, with a short grace period), with `extra` TOML appended.
pub fn config_file(dir: &Path, file: &str, url: &str, extra: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"\n\
             [database]\nurl = {url}\n{extra}",
            url = toml::Value::String(url.into()),
        ),
    )
    .expect("a configuration file");
    path
}

/// The gateway binary, running.
pub struct Gateway {
    child: Child,
    address: SocketAddr,
    /// What it logged while starting, up to the line that says it listens: `log` hands these
    /// out first (work started before that line — a lease taken or waited for — logs there).
    started: std::sync::Mutex<Vec<String>>,
    lines: mpsc::Receiver<String>,
}

impl Gateway {
    /// Starts `switchboard --config <config> serve` and waits until it listens.
    pub fn start(config: &Path) -> Gateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("SWITCHBOARD_LISTEN")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = config.parent() {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("start the gateway binary");
        let (tx, lines) = mpsc::channel();
        for output in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut seen = Vec::new();
        let address = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the gateway did not start; it said: {seen:#?}"));
            if let Some(rest) = line.split("listening on http://").nth(1) {
                // In either log format (a JSON line quotes it).
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                seen.push(line);
                break address.parse().expect("a socket address");
            }
            seen.push(line);
        };
        Gateway {
            child,
            address,
            started: std::sync::Mutex::new(seen),
            lines,
        }
    }

    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once it exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the gateway's status")
    }

    /// SIGTERM: the clean shutdown a service manager asks for.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status.
    pub async fn exited(mut self, timeout: Duration) -> ExitStatus {
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                if let Some(exit) = self.try_wait() {
                    return exit;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still running: {:#?}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .expect("the waiting thread")
    }

    /// `kill -9`: no shutdown, no flushing, nothing.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the gateway");
        let _ = self.child.wait();
    }

    /// What the gateway logged since the last call (the first call: since it started).
    pub fn log(&self) -> Vec<String> {
        let started = std::mem::take(&mut *self.started.lock().expect("the start-up lines"));
        started.into_iter().chain(self.lines.try_iter()).collect()
    }

    /// The resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the gateway's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
