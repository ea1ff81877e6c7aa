//! Health probes for `beacon beat`: is the service itself working?
//!
//! Takes the probes given (`--check-http URL`, `--check-tcp HOST:PORT`,
//! `--check-exec CMD`; all must pass), how often and how long to try, and
//! how many results in a row change the verdict; produces a [`Verdict`]
//! per round and a [`Health`] that flips only after `--check-failures`
//! failures or `--check-successes` successes in a row. A heartbeat only
//! proves that the sender runs; these say whether what it announces
//! answers. It never sends heartbeats itself (`beat` does, at once on a
//! change).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Command;

/// One probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// GET this `http://` URL: healthy on 2xx and 3xx.
    Http(String),
    /// Open a TCP connection to `HOST:PORT`.
    Tcp(String),
    /// Run this command with `sh -c`: healthy on exit status 0.
    Exec(String),
}

impl Probe {
    /// Runs the probe once, within `timeout`.
    ///
    /// # Errors
    /// Why it failed (no connection, a bad status, a timeout).
    pub async fn run(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.attempt(timeout)).await {
            Ok(result) => result,
            Err(_) => Err(format!("{self}: no answer within {timeout:?}")),
        }
    }

    async fn attempt(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Probe::Http(url) => {
                let url = url.clone();
                let status = tokio::task::spawn_blocking(move || http_status(&url, timeout))
                    .await
                    .map_err(|e| e.to_string())??;
                if (200..400).contains(&status) {
                    Ok(())
                } else {
                    Err(format!("{self}: HTTP {status}"))
                }
            }
            Probe::Tcp(target) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
                    .await
                    .map_err(|e| format!("{self}: {e}"))?
                    .collect();
                let mut last = format!("{self}: no address");
                for addr in addrs {
                    match TcpStream::connect(addr).await {
                        Ok(_) => return Ok(()),
                        Err(e) => last = format!("{self}: {addr}: {e}"),
                    }
                }
                Err(last)
            }
            Probe::Exec(command) => {
                let status = Command::new("sh")
                    .args(["-c", command])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| format!("{self}: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("{self}: {status}"))
                }
            }
        }
    }
}

/// The status code of a GET of `url` (redirects are not followed: a 3xx
/// is an answer).
fn http_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .new_agent();
    agent
        .get(url)
        .call()
        .map(|response| response.status().as_u16())
        .map_err(|e| format!("--check-http {url}: {e}"))
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Http(url) => write!(f, "--check-http {url}"),
            Probe::Tcp(target) => write!(f, "--check-tcp {target}"),
            Probe::Exec(command) => write!(f, "--check-exec {command:?}"),
        }
    }
}

/// Whether the service passes its probes, with hysteresis.
#[derive(Debug, Clone)]
pub struct Health {
    healthy: bool,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
    failures_needed: u32,
    successes_needed: u32,
}

impl Health {
    /// Starts healthy: an instance is announced up until its probes fail
    /// `failures` times in a row; it is back after `successes` passes.
    pub fn new(failures: u32, successes: u32) -> Self {
        Health {
            healthy: true,
            streak: 0,
            failures_needed: failures.max(1),
            successes_needed: successes.max(1),
        }
    }

    /// True while healthy.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Takes one round's result; true when the verdict changed.
    pub fn record(&mut self, passed: bool) -> bool {
        if passed == self.healthy {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.healthy {
            self.failures_needed
        } else {
            self.successes_needed
        };
        if self.streak >= needed {
            self.healthy = passed;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// Runs every probe once.
///
/// # Errors
/// The first failure.
pub async fn round(probes: &[Probe], timeout: Duration) -> Result<(), String> {
    for probe in probes {
        probe.run(timeout).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_changes_only_after_enough_results_in_a_row() {
        let mut health = Health::new(3, 2);
        assert!(health.healthy());
        assert!(!health.record(false));
        assert!(!health.record(false));
        assert!(!health.record(true)); // the streak starts over
        assert!(!health.record(false));
        assert!(!health.record(false));
        assert!(health.record(false));
        assert!(!health.healthy());
        assert!(!health.record(true));
        assert!(health.record(true));
        assert!(health.healthy());
    }

    #[tokio::test]
    async fn tcp_and_exec_probes_see_the_real_thing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let tcp = Probe::Tcp(addr);
        assert!(tcp.run(Duration::from_secs(2)).await.is_ok());
        drop(listener);
        assert!(tcp.run(Duration::from_secs(2)).await.is_err());
        assert!(
            Probe::Exec("true".into())
                .run(Duration::from_secs(2))
                .await
                .is_ok()
        );
        assert!(
            Probe::Exec("exit 3".into())
                .run(Duration::from_secs(2))
                .await
                .is_err()
        );
        let slow = Probe::Exec("sleep 5".into())
            .run(Duration::from_millis(100))
            .await;
        assert!(slow.is_err_and(|e| e.contains("no answer")));
    }
}
