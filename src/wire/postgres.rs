//! PostgreSQL's side of the wire that is not a driver's: the `SSLRequest`
//! that opens every verified connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{ConnectError, io_err};
use crate::tls::TlsFailure;

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
pub(crate) const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Whether a server that would not do PostgreSQL's TLS speaks MySQL: it
/// greets first, a packet whose 4-byte header ends with sequence 0 and
/// whose first byte is protocol version 10. Asked on a fresh connection
/// (the first one is spent), for one second at most.
pub(crate) async fn speaks_mysql(target: &crate::target::Target) -> bool {
    let look = async {
        let mut dialed = crate::net::dial(target, &crate::net::Stage::default())
            .await
            .ok()?;
        let mut head = [0_u8; 5];
        dialed.stream.read_exact(&mut head).await.ok()?;
        Some(head[3] == 0 && head[4] == 10)
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), look)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// PostgreSQL: `SSLRequest`, answered by one byte, `S` to go on with TLS.
pub(crate) async fn postgres_ssl_request(stream: &mut TcpStream) -> Result<(), ConnectError> {
    stream
        .write_all(&SSL_REQUEST)
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
        other => {
            // A MySQL greeting's header: 3 length bytes, sequence 0, then
            // protocol version 10.
            let mut rest = [0_u8; 4];
            let more = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                stream.read_exact(&mut rest),
            )
            .await;
            if matches!(more, Ok(Ok(_))) && rest[2] == 0 && rest[3] == 10 {
                return Err(ConnectError::WrongProtocol {
                    speaks: "MySQL",
                    expected: "PostgreSQL",
                    command: "mysql",
                });
            }
            Err(ConnectError::Server(format!(
                "unexpected answer to SSLRequest (byte {other:#04x}); is this PostgreSQL?"
            )))
        }
    }
}
