//! PostgreSQL's side of the wire that is not a driver's: the `SSLRequest`
//! that opens every verified connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{ConnectError, io_err};
use crate::tls::TlsFailure;

/// PostgreSQL: `SSLRequest` (length 8, code 80877103), answered by one
/// byte, `S` to go on with TLS.
pub(crate) async fn postgres_ssl_request(stream: &mut TcpStream) -> Result<(), ConnectError> {
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .map_err(io_err("sending SSLRequest"))?;
    let mut answer = [0_u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(io_err("reading the SSLRequest answer"))?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err(ConnectError::Tls(TlsFailure::NoTls)),
        other => Err(ConnectError::Server(format!(
            "unexpected answer to SSLRequest (byte {other:#04x}); is this PostgreSQL?"
        ))),
    }
}
