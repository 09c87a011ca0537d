//! The daemon under measurement: the real `cronbyte` binary as a child process,
//! with its READY notice, resident memory and CPU time read from outside.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

pub struct Daemon {
    child: Child,
    /// From spawn to READY=1.
    pub ready_after: Duration,
    spawned: Instant,
    _notify: UnixDatagram,
}

/// The `cronbyte` binary beside this one.
pub fn binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me
        .parent()
        .context("the bench binary has no directory")?
        .join("cronbyte");
    if !path.exists() {
        bail!(
            "{} does not exist: build it first (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

impl Daemon {
    /// Starts `cronbyte run --config config` and waits for its READY=1.
    pub fn start(config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let socket_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let notify = UnixDatagram::bind(&socket_path)?;
        notify.set_read_timeout(Some(Duration::from_secs(60)))?;
        let started = Instant::now();
        // `CRONBYTE_BENCH_WRAP="heaptrack -o /tmp/idle"` runs the daemon under a profiler;
        // the figures read from /proc are then the profiler's, not the daemon's.
        let mut command = match std::env::var("CRONBYTE_BENCH_WRAP") {
            Ok(wrap) if !wrap.trim().is_empty() => {
                let mut words = wrap.split_whitespace();
                let mut command = Command::new(words.next().unwrap_or_default());
                command.args(words).arg(binary()?);
                command
            }
            _ => Command::new(binary()?),
        };
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("could not start cronbyte")?;
        let mut buffer = [0u8; 1024];
        loop {
            let n = notify.recv(&mut buffer).context("no READY=1 within 60 s")?;
            if String::from_utf8_lossy(&buffer[..n]).contains("READY=1") {
                break;
            }
        }
        Ok(Self {
            child,
            ready_after: started.elapsed(),
            spawned: started,
            _notify: notify,
        })
    }

    /// How long ago it was spawned.
    pub fn since_spawn(&self) -> Duration {
        self.spawned.elapsed()
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:").map(|kib| kib * 1024)
    }

    /// The most resident memory it has had so far (the kernel's high-water mark), in
    /// bytes: what a container's memory limit meets.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:").map(|kib| kib * 1024)
    }

    fn status_kib(&self, key: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in /proc/PID/status"))
    }

    /// Sends SIGHUP: the daemon reads its config again.
    pub fn reload(&self) -> anyhow::Result<()> {
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("SIGHUP could not be sent");
        }
        Ok(())
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the parenthesised command name; utime and stime are the
        // 14th and 15th fields of the whole line.
        let rest = stat.rsplit_once(')').context("odd stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("no utime")?.parse()?;
        let stime: f64 = fields.get(12).context("no stime")?.parse()?;
        Ok((utime + stime) / TICKS_PER_SECOND)
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("cronbyte exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A bench that fails half-way must not leave a daemon behind.
        let _ = self.child.kill();
    }
}
