//! A throwaway PostgreSQL server for one process: the tests, the demo, and the scratch
//! databases of `sluice trace`, `drift` and `roundtrip` (which must never run on the
//! production cluster).
//!
//! Started on first use from `initdb` and `postgres` (found on `PATH` or in
//! `/usr/lib/postgresql/*/bin`), in a private temporary directory, listening on a free
//! loopback port. PostgreSQL refuses to run as root, so under root the cluster runs as the
//! `postgres` user (or `nobody`). It is stopped and its directory removed when the test
//! process exits, whether the tests passed or failed; a watchdog process does the same if the
//! test process is killed.

mod pooler;

pub use pooler::{PoolMode, Pooler};

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser of throwaway clusters. Its password is required over TCP, so the tests see
/// password authentication (and redaction) for real.
/// Not `sluice`: with the default `search_path` (`"$user", public`) a role named like sluice's
/// schema would create unqualified objects in that schema.
const SUPERUSER: &str = "sluice_test_admin";
const SUPERUSER_PASSWORD: &str = "throwaway-pw-5c1f";
/// Longest wait for a new cluster to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a fast shutdown before the cluster is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The server to use.
#[derive(Debug)]
pub struct Server {
    /// A superuser URL for the `postgres` database, used to create and drop test databases.
    pub admin_url: String,
    /// Whether this process started the server (and will remove it).
    pub throwaway: bool,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DURABLE: AtomicBool = AtomicBool::new(false);

/// Makes a throwaway server started after this call keep PostgreSQL's default durability
/// (fsync, synchronous commit), so benchmarks pay for commits as production does. Tests
/// leave it off for speed.
pub fn prefer_durable_server() {
    DURABLE.store(true, Ordering::SeqCst);
}
static RUNNING: Mutex<Option<Cluster>> = Mutex::new(None);

/// The server for this process, started on first call: `DATABASE_URL` when set, else a
/// throwaway one. When no server can be had, prints one line, prefixed with `who`, saying what
/// to install or set, and ends the process.
pub fn server(who: &str) -> &'static Server {
    SERVER.get_or_init(|| match start_or_use_existing() {
        Ok(server) => server,
        Err(message) => {
            // Straight to the process's stderr: the test harness captures `eprintln!`, and
            // this line must be seen even though the process ends here.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{who}: {message}");
            std::process::exit(2);
        }
    })
}

/// How a server is stopped, as `pg_ctl stop -m` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Rolls back open transactions and disconnects every client.
    Fast,
    /// Every process ends at once; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn signal(self) -> libc::c_int {
        match self {
            Self::Fast => libc::SIGINT,
            Self::Immediate => libc::SIGQUIT,
        }
    }
}

/// A server of a test's own, which the test may stop and restart (never `DATABASE_URL`'s,
/// which other tests share). Stopped and removed when dropped.
pub struct PrivateServer {
    cluster: Option<Cluster>,
}

impl std::fmt::Debug for PrivateServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateServer")
            .field("port", &self.cluster.as_ref().map(|c| c.port))
            .finish()
    }
}

impl PrivateServer {
    /// Starts a new cluster from the installed binaries (durable settings off, like the
    /// shared test server).
    pub fn start() -> Result<Self, String> {
        Ok(Self {
            cluster: Some(Cluster::start(DURABLE.load(Ordering::SeqCst))?),
        })
    }

    /// Starts a new cluster that keeps PostgreSQL's durability (fsync, synchronous commit):
    /// for tests that crash it (an immediate stop), where a fast server would lose commits
    /// that production keeps.
    pub fn start_durable() -> Result<Self, String> {
        Ok(Self {
            cluster: Some(Cluster::start(true)?),
        })
    }

    /// A superuser URL for its `postgres` database.
    pub fn admin_url(&self) -> String {
        self.cluster().admin_url()
    }

    /// `127.0.0.1:<port>`: where it listens.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.cluster().port)
    }

    /// `url`, a URL on `other` (this server's primary or standby), pointed at this server.
    pub fn url_from(&self, url: &str, other: &PrivateServer) -> String {
        url.replacen(&other.address(), &self.address(), 1)
    }

    /// A streaming standby of this server (`pg_basebackup -R`), read-only until promoted
    /// (`SELECT pg_promote()` on it). Stopped and removed when dropped, like this one.
    pub fn start_standby(&self) -> Result<Self, String> {
        Ok(Self {
            cluster: Some(self.cluster().standby()?),
        })
    }

    /// Stops the server with `mode` and leaves it stopped.
    pub fn stop(&mut self, mode: StopMode) {
        self.cluster_mut().halt(mode);
    }

    /// Starts the stopped server again and waits until it accepts logins.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.cluster_mut().resume()
    }

    /// `pg_ctl restart -m <mode>`: stops, starts again, waits until it accepts logins.
    pub fn restart(&mut self, mode: StopMode) -> Result<(), String> {
        self.stop(mode);
        self.start_again()
    }

    fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("the cluster lives until drop")
    }

    fn cluster_mut(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("the cluster lives until drop")
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop();
        }
    }
}

/// Stops the throwaway server now (if this process started one) instead of at exit.
pub fn stop() {
    stop_running_cluster();
}

/// `DATABASE_URL`, or a new throwaway server.
fn start_or_use_existing() -> Result<Server, String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        return Ok(Server {
            admin_url: url,
            throwaway: false,
        });
    }
    let cluster = Cluster::start(DURABLE.load(Ordering::SeqCst)).map_err(|reason| {
        format!(
            "DATABASE_URL is not set and no throwaway server could be started: {reason}; \
             install the PostgreSQL server package (Debian/Ubuntu: apt-get install postgresql) \
             or set DATABASE_URL to a server where the tests may create databases"
        )
    })?;
    let admin_url = cluster.admin_url();
    *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = Some(cluster);
    register_stop_at_exit();
    Ok(Server {
        admin_url,
        throwaway: true,
    })
}

struct Cluster {
    dir: PathBuf,
    port: u16,
    postgres: Child,
    bin: PathBuf,
    owner: Owner,
    durable: bool,
}

impl Cluster {
    fn start(durable: bool) -> Result<Self, String> {
        let bin = find_server_binaries()?;
        let owner = Owner::for_server()?;
        let dir = make_private_dir(&owner)?;
        let started = Self::init_and_spawn(&bin, &owner, &dir, durable);
        if started.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        started
    }

    fn init_and_spawn(
        bin: &Path,
        owner: &Owner,
        dir: &Path,
        durable: bool,
    ) -> Result<Self, String> {
        let data = dir.join("data");
        let pwfile = dir.join("pwfile");
        write_owned(&pwfile, SUPERUSER_PASSWORD, owner)?;
        let initdb = owner
            .command(bin.join("initdb"), dir)
            .args(["--no-sync", "--no-locale", "--encoding=UTF8"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--username={SUPERUSER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.join("initdb").display()))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&initdb.stderr).trim()
            ));
        }
        let port = free_port()?;
        let postgres = spawn_postgres(bin, owner, dir, port, durable)?;
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            port,
            postgres,
            bin: bin.to_path_buf(),
            owner: owner.clone(),
            durable,
        };
        let ready =
            spawn_watchdog(cluster.postgres.id(), dir).and_then(|()| cluster.wait_until_ready());
        match ready {
            Ok(()) => Ok(cluster),
            Err(message) => {
                cluster.stop();
                Err(message)
            }
        }
    }

    /// A new cluster streaming from this one.
    fn standby(&self) -> Result<Self, String> {
        let basebackup = server_tool(&self.bin, "pg_basebackup")?;
        let dir = make_private_dir(&self.owner)?;
        let copied = self
            .owner
            .command(basebackup.clone(), &dir)
            .args(["--write-recovery-conf", "--no-sync", "--checkpoint=fast"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .arg("-D")
            .arg(dir.join("data"))
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", basebackup.display()));
        let started = copied.and_then(|output| {
            if !output.status.success() {
                return Err(format!(
                    "pg_basebackup failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            let port = free_port()?;
            let postgres = spawn_postgres(&self.bin, &self.owner, &dir, port, self.durable)?;
            let mut standby = Self {
                dir: dir.clone(),
                port,
                postgres,
                bin: self.bin.clone(),
                owner: self.owner.clone(),
                durable: self.durable,
            };
            spawn_watchdog(standby.postgres.id(), &dir)?;
            match standby.wait_until_ready() {
                Ok(()) => Ok(standby),
                Err(message) => {
                    standby.halt(StopMode::Immediate);
                    Err(message)
                }
            }
        });
        if started.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        started
    }

    /// Stops the server the way `pg_ctl stop -m <mode>` does and waits for it to exit.
    fn halt(&mut self, mode: StopMode) {
        signal(self.postgres.id(), mode.signal());
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while matches!(self.postgres.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.postgres.try_wait(), Ok(None)) {
            let _ = self.postgres.kill();
            let _ = self.postgres.wait();
        }
    }

    /// Starts the stopped server again on the same port and data (after an immediate stop,
    /// PostgreSQL runs crash recovery first).
    fn resume(&mut self) -> Result<(), String> {
        self.postgres = spawn_postgres(&self.bin, &self.owner, &self.dir, self.port, self.durable)?;
        spawn_watchdog(self.postgres.id(), &self.dir)?;
        self.wait_until_ready()
    }
}

/// Starts `postgres` on `dir`'s cluster, its log appended to `dir/server.log`.
fn spawn_postgres(
    bin: &Path,
    owner: &Owner,
    dir: &Path,
    port: u16,
    durable: bool,
) -> Result<Child, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|e| format!("cannot open the server log in {}: {e}", dir.display()))?;
    owner
        .command(bin.join("postgres"), dir)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(server_settings(durable).iter().flat_map(|s| ["-c", *s]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group, so a Ctrl-C meant for the test run does not reach it before
        // the cleanup does.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.join("postgres").display()))
}

impl Cluster {
    fn admin_url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Waits until the server answers a real login; reports its log if it dies first.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let url = self.admin_url();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.postgres.try_wait() {
                return Err(format!(
                    "the throwaway PostgreSQL server exited at startup ({status}): {}",
                    self.log_tail()
                ));
            }
            match try_login(&url) {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    return Err(format!(
                        "the throwaway PostgreSQL server did not accept connections within {}s: \
                         {e}; server log: {}",
                        STARTUP_TIMEOUT.as_secs(),
                        self.log_tail()
                    ));
                }
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Fast shutdown (rolls back open transactions, disconnects), then removes the files.
    fn stop(mut self) {
        self.halt(StopMode::Fast);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One login attempt, on a thread of its own: the caller may be inside a test's runtime, which
/// cannot be blocked on.
fn try_login(url: &str) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            use sqlx::Connection;
            let connection = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            connection.close().await.map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the login attempt panicked".to_owned()))
}

/// Settings of every throwaway server.
const SERVER_SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "max_connections=300",
    "shared_buffers=128MB",
    "unix_socket_permissions=0777",
    "log_min_messages=warning",
];

/// Test servers trade durability for speed: their data is thrown away anyway.
const FAST_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

fn server_settings(durable: bool) -> Vec<&'static str> {
    let mut settings = SERVER_SETTINGS.to_vec();
    if !durable {
        settings.extend_from_slice(FAST_SETTINGS);
    }
    settings
}

/// Where `initdb` and `postgres` live: a `PATH` directory holding both, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_server_binaries() -> Result<PathBuf, String> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| has_both(d)) {
        return Ok(dir);
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, dir)| dir).ok_or_else(|| {
        "no PostgreSQL server binaries (initdb, postgres) were found on PATH or in \
         /usr/lib/postgresql/*/bin"
            .to_owned()
    })
}

/// A client program of the server's installation (`pg_basebackup`): beside `initdb`, or
/// beside the file `initdb` links to (`/usr/local/bin/initdb` → `/usr/lib/postgresql/15/bin`).
fn server_tool(bin: &Path, name: &str) -> Result<PathBuf, String> {
    let beside = bin.join(name);
    if beside.is_file() {
        return Ok(beside);
    }
    bin.join("initdb")
        .canonicalize()
        .ok()
        .and_then(|initdb| initdb.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .ok_or_else(|| format!("no {name} beside {}", bin.join("initdb").display()))
}

/// The user the server runs as: ourselves, or an unprivileged user when we are root.
#[derive(Clone)]
struct Owner {
    ids: Option<(u32, u32)>,
}

impl Owner {
    fn for_server() -> Result<Self, String> {
        if !is_root() {
            return Ok(Self { ids: None });
        }
        for user in ["postgres", "nobody"] {
            if let (Some(uid), Some(gid)) = (id_of(user, "-u"), id_of(user, "-g")) {
                return Ok(Self {
                    ids: Some((uid, gid)),
                });
            }
        }
        Err(
            "running as root, and PostgreSQL refuses to run as root, but there is no \
             `postgres` or `nobody` user to run it as (create one: useradd postgres)"
                .to_owned(),
        )
    }

    fn command(&self, program: PathBuf, cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(cwd).env_remove("PGDATA");
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn chown(&self, path: &Path) -> Result<(), String> {
        match self.ids {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to the server user: {e}", path.display())),
            None => Ok(()),
        }
    }
}

fn is_root() -> bool {
    id_of("", "-u") == Some(0)
}

/// `id -u USER` / `id -g USER`; an empty user means ourselves.
fn id_of(user: &str, flag: &str) -> Option<u32> {
    let mut command = Command::new("id");
    command.arg(flag);
    if !user.is_empty() {
        command.arg(user);
    }
    let output = command.stderr(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn make_private_dir(owner: &Owner) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "sluice-pg-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))?;
    owner.chown(&dir)?;
    Ok(dir)
}

fn write_owned(path: &Path, contents: &str, owner: &Owner) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    owner.chown(path)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// A shell process that outlives a killed test process just long enough to stop the server and
/// remove its files. It watches the test process and does nothing while that lives.
fn spawn_watchdog(postgres_pid: u32, dir: &Path) -> Result<(), String> {
    const SCRIPT: &str = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        kill -INT "$2" 2>/dev/null
        i=0
        while kill -0 "$2" 2>/dev/null && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i+1)); done
        kill -KILL "$2" 2>/dev/null
        rm -rf "$3"
    "#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("sluice-test-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(postgres_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the cleanup watchdog: {e}"))
}

fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    #[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Runs at normal process exit, which is how the test harness ends after passing or failing
/// tests: statics are never dropped, so this is where the cluster is stopped.
extern "C" fn stop_running_cluster() {
    let cluster = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(cluster) = cluster {
        cluster.stop();
    }
}

fn register_stop_at_exit() {
    #[expect(unsafe_code, reason = "atexit(3) has no safe wrapper in std")]
    // SAFETY: the handler is a plain function that does not unwind (it ignores every error).
    unsafe {
        libc::atexit(stop_running_cluster);
    }
}
