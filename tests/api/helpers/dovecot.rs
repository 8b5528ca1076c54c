//! A real IMAP server for a test: Debian's dovecot, started in the foreground with a configuration
//! of its own in a temporary directory, on a free port of 127.0.0.1, with one user (`test`,
//! password `secret`) and a Maildir. `.ci/run` installs dovecot; without it the IMAP tests are
//! skipped with a note (a failure when `SWITCHBOARD_REQUIRE_IMAP` is set).

use std::{
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running dovecot.
pub struct Dovecot {
    /// Where it serves IMAP.
    pub address: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    /// Starts a dovecot, or returns `None` (after saying so) when it is not installed.
    pub async fn start() -> Option<Dovecot> {
        let binary = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(binary) = binary else {
            if std::env::var_os("SWITCHBOARD_REQUIRE_IMAP").is_some() {
                panic!("dovecot is required (SWITCHBOARD_REQUIRE_IMAP) but not installed");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\nnote: IMAP tests are SKIPPED: install dovecot-imapd to run them\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a dovecot directory");
        let root = dir.path();
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(root.join(sub)).expect("dovecot directories");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // dovecot refuses to run mail processes as root; as root, they run as nobody.
        let (uid, gid) = if unsafe_is_root() {
            chown_nobody(&root.join("mail"));
            chown_nobody(&root.join("home"));
            (65534, 65534)
        } else {
            own_ids()
        };
        let users = if unsafe_is_root() {
            String::new()
        } else {
            let me = std::env::var("USER").unwrap_or_default();
            format!("default_login_user = {me}\ndefault_internal_user = {me}\n")
        };
        std::fs::write(root.join("passwd"), "test:{PLAIN}secret::::::\n").expect("passwd");
        let conf = format!(
            "base_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:{r}/mail/%u\n\
             first_valid_uid = 1\n{users}\
             passdb {{\n  driver = passwd-file\n  args = {r}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={r}/home/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
             \x20 inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service stats {{\n  unix_listener stats-reader {{\n    mode = 0666\n  }}\n\
             \x20 unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n",
            r = root.display()
        );
        std::fs::write(root.join("dovecot.conf"), conf).expect("dovecot.conf");
        set_mode(root, 0o755);
        let child = Command::new(binary)
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "dovecot did not start; its log: {}",
                std::fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Dovecot {
            address,
            child,
            dir,
        })
    }

    /// The mailbox URL for the gateway.
    pub fn url(&self) -> String {
        format!("imap://test:secret@{}/INBOX", self.address)
    }

    /// Puts a mail into the test user's INBOX, as a delivery would.
    pub async fn deliver(&self, mail: &[u8]) {
        let stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connect to dovecot");
        let mut client = async_imap::Client::new(stream);
        client.read_response().await.expect("greeting");
        let mut session = client
            .login("test", "secret")
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        session
            .append("INBOX", None, None, mail)
            .await
            .expect("append a mail");
        session.logout().await.expect("logout");
    }

    /// The log, for failing tests.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

fn unsafe_is_root() -> bool {
    own_ids().0 == 0
}

fn own_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("Uid:"), field("Gid:"))
}

fn chown_nobody(path: &std::path::Path) {
    let _ = Command::new("chown")
        .arg("-R")
        .arg("nobody:nogroup")
        .arg(path)
        .status();
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
