//! The sockets the node and the Nitro host proxy speak over: TCP, vsock (the only channel in
//! and out of a Nitro enclave) and Unix sockets (a local stand-in with the same stream
//! semantics, used by tests and by same-host setups).
//!
//! One [`Listener`] and one [`Stream`] type cover all three, so the HTTP accept loop
//! ([`crate::server`]) and the proxy ([`crate::proxy`]) run the same code whatever carries
//! the bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};

/// The vsock CID of the parent instance, as seen from inside a Nitro enclave.
pub const VSOCK_PARENT_CID: u32 = 3;
/// "Any CID": what a vsock listener binds to.
pub const VSOCK_ANY_CID: u32 = u32::MAX;

/// An address to listen on or connect to.
///
/// Spelled `HOST:PORT` or `tcp:HOST:PORT` (TCP), `vsock:PORT` (listen on any CID),
/// `vsock:CID:PORT`, or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// A TCP socket address (host names are resolved when connecting).
    Tcp(String),
    /// A vsock address; `cid` is [`VSOCK_ANY_CID`] for a listener on every CID.
    Vsock {
        /// Context id (2 = host, 3 = the parent of a Nitro enclave, 16+ = enclaves).
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

/// An address string that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address {input:?}: {reason} (use HOST:PORT, vsock:PORT, vsock:CID:PORT or unix:PATH)")]
pub struct AddrError {
    input: String,
    reason: &'static str,
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrError {
            input: s.to_owned(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("vsock:") {
            let num = |v: &str| v.parse::<u32>().map_err(|_| err("not a 32-bit number"));
            return match rest.split_once(':') {
                Some((cid, port)) => Ok(Addr::Vsock {
                    cid: num(cid)?,
                    port: num(port)?,
                }),
                None => Ok(Addr::Vsock {
                    cid: VSOCK_ANY_CID,
                    port: num(rest)?,
                }),
            };
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(err("empty socket path"));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp:").unwrap_or(s);
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Addr::Tcp(hostport.to_owned()))
            }
            _ => Err(err("not HOST:PORT")),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => f.write_str(a),
            Addr::Vsock { cid, port } if *cid == VSOCK_ANY_CID => write!(f, "vsock:{port}"),
            Addr::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr::Tcp(a.to_string())
    }
}

impl serde::Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg_attr(all(target_os = "linux", unix), allow(dead_code))]
fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} sockets are not supported on this platform"),
    )
}

/// A bound listener on any transport.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// vsock (Linux).
    #[cfg(target_os = "linux")]
    Vsock(tokio_vsock::VsockListener),
    /// Unix stream socket.
    #[cfg(unix)]
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

#[cfg(unix)]
impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Listener::Unix(l)
    }
}

impl Listener {
    /// Binds `addr`. A Unix socket left behind by a process that stopped (nobody accepts on
    /// it) is replaced, so a restarted proxy or node can bind again; any other file at the
    /// path makes binding fail.
    pub async fn bind(addr: &Addr) -> io::Result<Listener> {
        match addr {
            Addr::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a.as_str()).await?)),
            #[cfg(target_os = "linux")]
            Addr::Vsock { cid, port } => Ok(Listener::Vsock(tokio_vsock::VsockListener::bind(
                tokio_vsock::VsockAddr::new(*cid, *port),
            )?)),
            #[cfg(not(target_os = "linux"))]
            Addr::Vsock { .. } => Err(unsupported("vsock")),
            #[cfg(unix)]
            Addr::Unix(p) => {
                remove_stale_socket(p).await;
                Ok(Listener::Unix(UnixListener::bind(p)?))
            }
            #[cfg(not(unix))]
            Addr::Unix(_) => Err(unsupported("unix")),
        }
    }

    /// The address actually bound (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::from),
            #[cfg(target_os = "linux")]
            Listener::Vsock(l) => l.local_addr().map(|a| Addr::Vsock {
                cid: a.cid(),
                port: a.port(),
            }),
            #[cfg(unix)]
            Listener::Unix(l) => {
                let a = l.local_addr()?;
                let p = a.as_pathname().map(PathBuf::from).unwrap_or_default();
                Ok(Addr::Unix(p))
            }
        }
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Small request/response exchanges: do not wait to fill segments.
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            #[cfg(target_os = "linux")]
            Listener::Vsock(l) => Ok(Stream::Vsock(l.accept().await?.0)),
            #[cfg(unix)]
            Listener::Unix(l) => Ok(Stream::Unix(l.accept().await?.0)),
        }
    }
}

/// Removes `path` if it is a Unix socket nobody listens on any more.
#[cfg(unix)]
async fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket
        && let Err(e) = UnixStream::connect(path).await
        && e.kind() == io::ErrorKind::ConnectionRefused
    {
        let _ = std::fs::remove_file(path);
    }
}

/// A connected stream on any transport.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// vsock (Linux).
    #[cfg(target_os = "linux")]
    Vsock(tokio_vsock::VsockStream),
    /// Unix stream socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `addr` (host names resolved by the system resolver).
    pub async fn connect(addr: &Addr) -> io::Result<Stream> {
        match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            #[cfg(target_os = "linux")]
            Addr::Vsock { cid, port } => Ok(Stream::Vsock(
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?,
            )),
            #[cfg(not(target_os = "linux"))]
            Addr::Vsock { .. } => Err(unsupported("vsock")),
            #[cfg(unix)]
            Addr::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p).await?)),
            #[cfg(not(unix))]
            Addr::Unix(_) => Err(unsupported("unix")),
        }
    }
}

/// Forwards every `AsyncRead`/`AsyncWrite` call to the inner stream.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            #[cfg(target_os = "linux")]
            Stream::Vsock($s) => $e,
            #[cfg(unix)]
            Stream::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(target_os = "linux")]
            Stream::Vsock(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Whether this kernel lets a process create a vsock socket at all (for clear messages and
/// for tests that must skip where there is none). Async because the probe socket registers
/// with the runtime.
pub async fn vsock_available() -> bool {
    #[cfg(target_os = "linux")]
    {
        // Port -1U (VMADDR_PORT_ANY) lets the kernel pick a free port: nothing is taken.
        tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(VSOCK_ANY_CID, u32::MAX))
            .is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}
