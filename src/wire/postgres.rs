//! PostgreSQL's side of the wire that is not a driver's: the `SSLRequest`
//! that opens every verified connection.

use crate::net::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::net::{ConnectError, io_err};
use crate::target::EngineKind;
use crate::tls::TlsFailure;

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
pub(crate) const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How long rdsconn looks for a MySQL greeting where PostgreSQL was
/// expected.
const LOOK: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether what `stream` sends after its first byte (a length's low byte,
/// any value) continues a MySQL greeting: 2 more length bytes, sequence 0,
/// then protocol version 10.
async fn greets_as_mysql<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut rest = [0_u8; 4];
    let read = tokio::time::timeout(LOOK, stream.read_exact(&mut rest)).await;
    matches!(read, Ok(Ok(_))) && rest[2] == 0 && rest[3] == 10
}

/// Whether a server that would not do PostgreSQL's TLS speaks MySQL (it
/// greets first), asked on a fresh connection: the first one is spent.
pub(crate) async fn speaks_mysql(target: &crate::target::Target) -> bool {
    let look = async {
        let mut dialed = crate::net::dial(target, &crate::net::Stage::default())
            .await
            .ok()?;
        let mut first = [0_u8; 1];
        dialed.stream.read_exact(&mut first).await.ok()?;
        Some(greets_as_mysql(&mut dialed.stream).await)
    };
    tokio::time::timeout(LOOK * 2, look)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// PostgreSQL: `SSLRequest`, answered by one byte, `S` to go on with TLS.
pub(crate) async fn postgres_ssl_request(stream: &mut Stream) -> Result<(), ConnectError> {
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
            if greets_as_mysql(stream).await {
                return Err(ConnectError::WrongProtocol {
                    speaks: EngineKind::Mysql,
                });
            }
            Err(ConnectError::Server(format!(
                "unexpected answer to SSLRequest (byte {other:#04x}); is this PostgreSQL?"
            )))
        }
    }
}
