//! The gateway's local admin socket: a Unix domain socket in the state dir
//! (`admin.sock`, mode 0600, so only the operator's account can use it),
//! for the commands that need the live gateway (`keygate nodes list`,
//! `keygate nodes invoke`).
//!
//! One JSON request per line, one JSON answer per line:
//!
//! ```text
//! → {"op":"nodes"}
//! ← {"ok":true,"nodes":[{"device_id":"kgd1…","name":"…","capabilities":["echo"],
//!     "registered_at":"2026-…Z","last_heartbeat":"2026-…Z"}]}
//! → {"op":"invoke","device_id":"kgd1…","capability":"echo","payload_hex":"6869"}
//! ← {"ok":true,"result":{"ok":true,"payload_hex":"6869"}}
//! ← {"ok":false,"code":"NodeUnavailable","error":"device kgd1… is not connected"}
//! ```
//!
//! The socket is made in a fresh 0700 folder, set to 0600 and only then
//! moved into place, so no other account can connect in between.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Gateway;
use crate::identity::DeviceId;

/// The admin socket's file name in the state dir.
pub const SOCKET_NAME: &str = "admin.sock";
/// The longest request line read.
pub const MAX_REQUEST_LEN: u64 = 64 * 1024;

/// The admin socket of `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The connected nodes.
    Nodes {},
    /// Invoke a capability on a node.
    Invoke {
        /// The node's device id.
        device_id: String,
        /// The capability.
        capability: String,
        /// The input, hex.
        payload_hex: String,
    },
}

/// A node as the admin socket and the HTTP admin API list it (and
/// `keygate nodes list --json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Its device id.
    pub device_id: String,
    /// Its name.
    pub name: String,
    /// The capabilities it registered.
    pub capabilities: Vec<String>,
    /// When it registered (RFC 3339, UTC).
    pub registered_at: String,
    /// Its last heartbeat (RFC 3339, UTC).
    pub last_heartbeat: String,
}

impl From<crate::node::Node> for NodeView {
    fn from(n: crate::node::Node) -> Self {
        Self {
            device_id: n.device_id.to_string(),
            name: n.name,
            capabilities: n.capabilities,
            registered_at: crate::time::rfc3339(n.registered_at),
            last_heartbeat: crate::time::rfc3339(n.last_heartbeat),
        }
    }
}

/// A node's answer to an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeView {
    /// Whether the capability succeeded.
    pub ok: bool,
    /// Its output (or error text), hex.
    pub payload_hex: String,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    /// The node list.
    Nodes {
        /// Always true.
        ok: bool,
        /// The nodes.
        nodes: Vec<NodeView>,
    },
    /// An invocation's answer.
    Invoked {
        /// Always true.
        ok: bool,
        /// The node's answer.
        result: InvokeView,
    },
    /// The request failed.
    Failed {
        /// Always false.
        ok: bool,
        /// The refusal's name (`NodeUnavailable`, `Timeout`, …) or `BadRequest`.
        code: String,
        /// Why.
        error: String,
    },
}

impl Response {
    fn failed(code: impl Into<String>, error: impl Into<String>) -> Self {
        Response::Failed {
            ok: false,
            code: code.into(),
            error: error.into(),
        }
    }
}

/// Why the admin socket could not be served or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Another gateway answers on this state dir's socket.
    #[error(
        "another gateway is already serving state dir {} (its admin socket {} answers)",
        state_dir.display(),
        socket.display()
    )]
    InUse {
        /// The state dir.
        state_dir: PathBuf,
        /// The socket.
        socket: PathBuf,
    },
    /// No gateway answers.
    #[error(
        "no gateway is running on state dir {} (nothing answers at {}): start one with \
         `keygate gateway run`",
        state_dir.display(),
        socket.display()
    )]
    NotRunning {
        /// The state dir.
        state_dir: PathBuf,
        /// The socket.
        socket: PathBuf,
    },
    /// Another I/O failure.
    #[error("admin socket {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The gateway answered something unreadable.
    #[error("admin socket {}: unreadable answer: {reason}", path.display())]
    BadAnswer {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The admin socket being served.
#[derive(Debug)]
pub struct AdminServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// The listening socket (a second handle), shut down to wake the
    /// accept loop: unlike connecting to the path, that works when the
    /// socket file is gone.
    listener: UnixListener,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves `gateway` on the admin socket of `state_dir`. A socket left
    /// by a gateway that died is replaced; one that answers is refused.
    ///
    /// # Errors
    /// [`AdminError::InUse`], or [`AdminError::Io`] naming the path.
    pub fn start(state_dir: &Path, gateway: Arc<Gateway>) -> Result<AdminServer, AdminError> {
        let path = socket_path(state_dir);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AdminError::Io { path, source }
        };
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(AdminError::InUse {
                    state_dir: state_dir.to_path_buf(),
                    socket: path,
                });
            }
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let private = state_dir.join(format!(".admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(io(&private))?;
        let staged = private.join(SOCKET_NAME);
        let bound = UnixListener::bind(&staged)
            .and_then(|l| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
                std::fs::rename(&staged, &path)?;
                Ok(l)
            })
            .map_err(io(&path));
        let _ = std::fs::remove_dir_all(&private);
        let listener = bound?;
        let wake = listener.try_clone().map_err(io(&path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("keygate-admin".into())
                .spawn(move || accept_loop(listener, gateway, stop))
                .map_err(io(&path))?
        };
        Ok(AdminServer {
            path,
            stop,
            listener: wake,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting and removes the socket.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop: a listening socket shut down fails its
        // accept at once.
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shut();
        }
    }
}

fn accept_loop(listener: UnixListener, gateway: Arc<Gateway>, stop: Arc<AtomicBool>) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                // Out of descriptors, say: do not spin.
                tracing::debug!(%error, "admin socket accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let gateway = gateway.clone();
        let spawned = std::thread::Builder::new()
            .name("keygate-admin-client".into())
            .spawn(move || serve_client(client, &gateway));
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot serve an admin client");
        }
    }
}

fn serve_client(client: UnixStream, gateway: &Gateway) {
    let Ok(mut writer) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client.take(MAX_REQUEST_LEN));
    let mut line = String::new();
    let response = match reader.read_line(&mut line) {
        Ok(0) => return,
        Ok(_) if !line.ends_with('\n') => {
            Response::failed("BadRequest", "the request is not one line under 64 KiB")
        }
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => answer(gateway, request),
            Err(e) => Response::failed("BadRequest", format!("unreadable request: {e}")),
        },
        Err(e) => Response::failed("BadRequest", format!("unreadable request: {e}")),
    };
    if let Ok(mut text) = serde_json::to_string(&response) {
        text.push('\n');
        let _ = writer.write_all(text.as_bytes());
    }
}

/// Answers one request.
pub fn answer(gateway: &Gateway, request: Request) -> Response {
    match request {
        Request::Nodes {} => Response::Nodes {
            ok: true,
            nodes: gateway.nodes().into_iter().map(NodeView::from).collect(),
        },
        Request::Invoke {
            device_id,
            capability,
            payload_hex,
        } => {
            let device = match DeviceId::parse(&device_id) {
                Ok(d) => d,
                Err(e) => {
                    return Response::failed(
                        "BadRequest",
                        format!("{device_id:?} is not a device id: {e}"),
                    );
                }
            };
            let Ok(payload) = hex::decode(&payload_hex) else {
                return Response::failed("BadRequest", "payload_hex is not hex");
            };
            if payload.len() > keygate_proto::MAX_PAYLOAD_LEN {
                return Response::failed(
                    "BadRequest",
                    format!(
                        "the payload is {} bytes; at most {} fit in an invocation",
                        payload.len(),
                        keygate_proto::MAX_PAYLOAD_LEN
                    ),
                );
            }
            match gateway.invoke(&device, &capability, payload) {
                Ok(result) => Response::Invoked {
                    ok: true,
                    result: InvokeView {
                        ok: result.ok,
                        payload_hex: hex::encode(result.payload),
                    },
                },
                Err(refusal) => Response::failed(format!("{:?}", refusal.code), refusal.reason),
            }
        }
    }
}

/// Sends `request` to the gateway serving `state_dir` and reads its answer
/// (waiting at most `timeout`).
///
/// # Errors
/// [`AdminError::NotRunning`] when no gateway answers; [`AdminError::Io`],
/// [`AdminError::BadAnswer`].
pub fn request(
    state_dir: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, AdminError> {
    let path = socket_path(state_dir);
    let io = |source| AdminError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            AdminError::NotRunning {
                state_dir: state_dir.to_path_buf(),
                socket: path.clone(),
            }
        }
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|e| AdminError::BadAnswer {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream.take(16 * 1024 * 1024))
        .read_line(&mut answer)
        .map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| AdminError::BadAnswer {
        path: path.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_have_the_documented_shape() {
        let r: Request = serde_json::from_str(r#"{"op":"nodes"}"#).unwrap();
        assert_eq!(r, Request::Nodes {});
        let r: Request = serde_json::from_str(
            r#"{"op":"invoke","device_id":"d","capability":"echo","payload_hex":"6869"}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::Invoke { .. }));
        assert!(serde_json::from_str::<Request>(r#"{"op":"nodes","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
        let failed: Response =
            serde_json::from_str(r#"{"ok":false,"code":"Timeout","error":"late"}"#).unwrap();
        assert_eq!(failed, Response::failed("Timeout", "late"));
        let listed: Response = serde_json::from_str(r#"{"ok":true,"nodes":[]}"#).unwrap();
        assert!(matches!(listed, Response::Nodes { .. }));
    }

    #[test]
    fn stopping_does_not_need_the_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = crate::gateway::testing::gateway(dir.path());
        let server = AdminServer::start(dir.path(), gateway.clone()).unwrap();
        let answer = request(dir.path(), &Request::Nodes {}, Duration::from_secs(5)).unwrap();
        assert!(matches!(answer, Response::Nodes { .. }));
        // The state dir's contents deleted under a running gateway.
        std::fs::remove_file(socket_path(dir.path())).unwrap();
        let (done, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            server.stop();
            let _ = done.send(());
        });
        stopped
            .recv_timeout(Duration::from_secs(10))
            .expect("stop returns without the socket file");
        gateway.shutdown();
    }

    #[test]
    fn no_gateway_is_a_clear_error_naming_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = request(dir.path(), &Request::Nodes {}, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, AdminError::NotRunning { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        // A socket file nobody listens on (a gateway that died) too.
        drop(UnixListener::bind(socket_path(dir.path())).unwrap());
        let err = request(dir.path(), &Request::Nodes {}, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, AdminError::NotRunning { .. }), "{err}");
    }
}
