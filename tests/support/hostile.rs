//! Servers that misbehave on purpose: they answer every connection with
//! fixed bytes (an error packet sent before TLS, garbage) and close, or
//! reset it at once.

use std::io::{Read, Write};
use std::net::TcpListener;

/// What a [`Hostile`] server does with each connection.
#[derive(Clone)]
pub enum Act {
    /// Writes these bytes (after reading what the client sent first, if
    /// `read_first`), then closes.
    Send { bytes: Vec<u8>, read_first: bool },
    /// Closes with a TCP reset, before sending anything.
    Reset,
    /// Reads the client's first bytes, then closes without answering.
    CloseAfterRead,
}

pub struct Hostile {
    pub port: u16,
}

impl Hostile {
    pub fn start(act: Act) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let act = act.clone();
                std::thread::spawn(move || serve(stream, &act));
            }
        });
        Self { port }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve(mut stream: std::net::TcpStream, act: &Act) {
    let mut buf = [0_u8; 1024];
    match act {
        Act::Send { bytes, read_first } => {
            if *read_first {
                let _ = stream.read(&mut buf);
            }
            let _ = stream.write_all(bytes);
        }
        Act::Reset => {
            let sock = socket2::SockRef::from(&stream);
            let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        }
        Act::CloseAfterRead => {
            let _ = stream.read(&mut buf);
        }
    }
}

/// A MySQL error packet as a server sends it in place of a greeting
/// (no SQLSTATE: the client's capabilities are not known yet).
pub fn mysql_error_packet(code: u16, message: &[u8]) -> Vec<u8> {
    let mut payload = vec![0xff];
    payload.extend_from_slice(&code.to_le_bytes());
    payload.extend_from_slice(message);
    let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
    let mut packet = vec![len[0], len[1], len[2], 0];
    packet.extend_from_slice(&payload);
    packet
}
