//! A throwaway PgBouncer in front of a server, for tests of sluice through a connection pooler.
//!
//! Found on `PATH` or in `/usr/sbin`; when missing and running as root on Debian, installed
//! from the distribution's `pgbouncer` package first (so the README's test command sets up a
//! fresh machine). It runs as the server's user (PgBouncer refuses root too), listens on a
//! free loopback port, takes any client (`auth_type = trust`, loopback only) and logs in to
//! the server as the user of the URL it was given, with that URL's password.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Owner, free_port, make_private_dir, spawn_watchdog, write_owned};

/// How PgBouncer hands server connections to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// One server connection per client for the client's whole session.
    Session,
    /// A server connection per transaction: the next transaction may run on another.
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

/// A running PgBouncer, stopped and its directory removed when dropped.
#[derive(Debug)]
pub struct Pooler {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Pooler {
    /// PgBouncer in `mode` in front of the server `url` points at, with at most `pool_size`
    /// server connections per database and user.
    pub fn start(url: &str, mode: PoolMode, pool_size: u32) -> Result<Self, String> {
        let target = Target::parse(url)?;
        let binary = find_or_install()?;
        let owner = Owner::for_server()?;
        let dir = make_private_dir(&owner)?;
        let port = free_port()?;
        let config = dir.join("pgbouncer.ini");
        write_owned(&config, &target.config(&dir, port, mode, pool_size), &owner)?;
        write_owned(&dir.join("users.txt"), &target.users(), &owner)?;
        let child = owner
            .command(binary.clone(), &dir)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        spawn_watchdog(child.id(), &dir)?;
        let mut pooler = Self { child, dir, port };
        pooler.wait_until_listening()?;
        Ok(pooler)
    }

    /// `url` with its host and port replaced by the pooler's.
    pub fn url(&self, url: &str) -> String {
        let target = Target::parse(url).expect("a URL the pooler was started for");
        url.replacen(
            &format!("@{}:{}/", target.host, target.port),
            &format!("@127.0.0.1:{}/", self.port),
            1,
        )
    }

    /// PgBouncer's own log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("PgBouncer exited ({status}): {}", self.log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "PgBouncer did not listen within 20 s: {}",
            self.log()
        ))
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the pooler logs in to.
struct Target {
    user: String,
    password: String,
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let invalid =
            || "the pooler needs a postgres://user:password@host:port/database URL".to_owned();
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(invalid)?;
        let (userinfo, rest) = rest.split_once('@').ok_or_else(invalid)?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (hostport, _) = rest.split_once('/').ok_or_else(invalid)?;
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        Ok(Self {
            user: user.to_owned(),
            password: password.to_owned(),
            host: host.to_owned(),
            port: port.parse().map_err(|_| invalid())?,
        })
    }

    fn config(&self, dir: &Path, port: u16, mode: PoolMode, pool_size: u32) -> String {
        format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = {mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            host = self.host,
            server_port = self.port,
            dir = dir.display(),
            mode = mode.as_str(),
        )
    }

    fn users(&self) -> String {
        format!("\"{}\" \"{}\"\n", self.user, self.password)
    }
}

/// The `pgbouncer` binary; installed from Debian's package when missing and we may.
fn find_or_install() -> Result<PathBuf, String> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = find() {
        return Ok(found);
    }
    if crate::is_root() && Path::new("/usr/bin/apt-get").exists() {
        // A fresh machine may have no package lists yet: read them when the first try fails.
        let mut failed = apt_get(&["install", "-y", "-qq", "pgbouncer"])?;
        if find().is_none() {
            apt_get(&["update", "-qq"])?;
            failed = apt_get(&["install", "-y", "-qq", "pgbouncer"])?;
        }
        return find().ok_or_else(|| {
            format!("pgbouncer is not installed and `apt-get install pgbouncer` failed: {failed}")
        });
    }
    Err(
        "pgbouncer is not installed (Debian: apt-get install pgbouncer); the pooler tests need it"
            .to_owned(),
    )
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file())
}

/// Runs apt-get; its error output.
fn apt_get(args: &[&str]) -> Result<String, String> {
    let output = Command::new("/usr/bin/apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get to install pgbouncer: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}
