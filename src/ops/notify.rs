//! systemd's notify protocol (`Type=notify`): `READY=1` once the proxy
//! accepts, `STOPPING=1` when it starts to drain, as datagrams to
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).

/// Sends `state` to `NOTIFY_SOCKET` when it is set; a failure is only
/// logged (the proxy serves either way).
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!("telling systemd {state} through NOTIFY_SOCKET: {e}");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        send_abstract(&socket, name, state)
    } else {
        socket.send_to(state.as_bytes(), path).map(drop)
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(
    socket: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    state: &str,
) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &addr).map(drop)
}

/// Abstract socket names are Linux's (as systemd is).
#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &std::os::unix::net::UnixDatagram, _: &[u8], _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "an abstract socket name (@...) needs Linux",
    ))
}
