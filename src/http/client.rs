//! `beacon status`: what a running server has registered, as a table.
//!
//! Takes the address of a server's HTTP endpoint; reads `/v1/services`
//! (the same JSON the status page shows) and produces one line per
//! instance: service, instance, address, port, proto, weight, priority,
//! state, lease left, key, tags. It only reads.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// Why the status could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The endpoint did not answer, or not with 200.
    #[error(
        "cannot read http://{addr}/v1/services: {reason} (is `beacon serve` running with --http {addr}?)"
    )]
    Fetch {
        /// The endpoint.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The reply was not the status JSON.
    #[error("http://{0}/v1/services did not return the status JSON")]
    Shape(SocketAddr),
}

/// The status of the server at `addr`, as a table.
///
/// # Errors
/// [`StatusError`] when the endpoint cannot be read.
pub fn table(addr: SocketAddr) -> Result<String, StatusError> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let fetch = |reason: String| StatusError::Fetch { addr, reason };
    let body = agent
        .get(&format!("http://{addr}/v1/services"))
        .call()
        .map_err(|e| fetch(e.to_string()))?
        .body_mut()
        .read_to_string()
        .map_err(|e| fetch(e.to_string()))?;
    let status: Value = serde_json::from_str(&body).map_err(|_| StatusError::Shape(addr))?;
    let services = status["services"]
        .as_array()
        .ok_or(StatusError::Shape(addr))?;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let tags = |v: &Value| {
        let tags: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if tags.is_empty() {
            "-".to_string()
        } else {
            tags.join(",")
        }
    };
    let mut rows = vec![
        [
            "SERVICE", "INSTANCE", "ADDRESS", "PORT", "PROTO", "WEIGHT", "PRIORITY", "STATE",
            "LEASE", "KEY", "TAGS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for service in services {
        for instance in service["instances"].as_array().into_iter().flatten() {
            let lease = instance["lease_remaining_s"].as_f64().unwrap_or(0.0);
            rows.push(vec![
                text(&service["name"]),
                text(&instance["id"]),
                text(&instance["address"]),
                text(&instance["port"]),
                text(&instance["proto"]),
                text(&instance["weight"]),
                text(&instance["priority"]),
                text(&instance["state"]),
                format!("{lease:.1}s"),
                text(&instance["key"]),
                tags(&instance["tags"]),
            ]);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(
        out,
        "{} services, {} instances, serial {}",
        services.len(),
        text(&status["instances"]),
        text(&status["serial"])
    );
    Ok(out)
}
