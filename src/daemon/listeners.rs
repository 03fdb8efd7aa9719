//! The daemon's management listeners: the control socket `nat64ctl` talks
//! to (one JSON request and answer per connection, [`super::control`]) and
//! the optional Prometheus endpoint (HTTP/1.0 GET /metrics).

use super::control::{self, Response};
use super::State;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Bind the control socket: its directory made 0750 if missing, the socket
/// 0660, and a stale socket (no daemon answering) replaced.
pub fn bind_control(path: &Path) -> Result<UnixListener, String> {
    let p = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("another nat64d answers on {p}"));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {p}: {e}"))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("cannot bind the control socket {p}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set the permissions of {p}: {e}"))?;
    Ok(l)
}

pub fn serve_control(state: Arc<State>, listener: UnixListener) {
    for conn in listener.incoming() {
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let resp = match control::read_request(&mut s) {
            Ok(req) => state.handle(req),
            Err(e) => Response::err(e),
        };
        let mut line = serde_json::to_string(&resp)
            .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"cannot encode the answer: {e}\"}}"));
        line.push('\n');
        let _ = s.write_all(line.as_bytes());
    }
}

/// A minimal HTTP/1.0 responder: GET /metrics gives the Prometheus text.
pub fn serve_metrics(state: Arc<State>, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let mut head = [0u8; 2048];
        let mut n = 0;
        while n < head.len() {
            match s.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if head[..n].windows(4).any(|w| w == b"\r\n\r\n") || head[..n].windows(2).any(|w| w == b"\n\n") {
                break;
            }
        }
        let req = String::from_utf8_lossy(&head[..n]);
        let path = req.split_whitespace().nth(1).unwrap_or("");
        let (status, ctype, body) = if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?"))
        {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", state.report().prometheus())
        } else {
            ("404 Not Found", "text/plain; charset=utf-8", "nat64d: metrics are at GET /metrics\n".to_string())
        };
        let _ = write!(
            s,
            "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
