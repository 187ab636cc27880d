//! PostgreSQL messages as the pool reads and writes them: framing (rows
//! and copy data pass in pieces), building, and what each reply means.

use bytes::{Bytes, BytesMut};

use super::MAX_MESSAGE;

/// What the server's replies to each message sent (or not sent) mean for
/// the client, in order.
pub(super) enum Expect {
    /// The client's own message of this kind: its replies go through.
    Relay(u8),
    /// The client's `Parse`, renamed to this statement: the replies go
    /// through.
    Prepared(String),
    /// A `Parse` rdsconn added so that the client's statement exists on
    /// this server connection: its `ParseComplete` is not the client's.
    Swallow(String),
    /// A `Close` of a statement rdsconn sent before preparing it (closing
    /// a statement that does not exist is no error): its `CloseComplete`
    /// is not the client's.
    Closed,
    /// A reply the client is owed without the server being asked (its
    /// statement is prepared already, or a `Close` of one).
    Synth(Vec<u8>),
}

impl Expect {
    /// Whether `reply` is the last reply to this message (`ReadyForQuery`
    /// and errors are handled apart).
    pub(super) fn ends_with(&self, reply: u8) -> bool {
        match self {
            Self::Relay(b'P') | Self::Prepared(_) | Self::Swallow(_) => reply == b'1',
            Self::Relay(b'B') => reply == b'2',
            Self::Relay(b'C') | Self::Closed => reply == b'3',
            Self::Relay(b'D') => matches!(reply, b'T' | b'n'),
            Self::Relay(b'E') => matches!(reply, b'C' | b'I' | b's'),
            _ => false,
        }
    }

    /// Answered by `ReadyForQuery`: `Sync`, a simple query, a function call.
    pub(super) fn is_sync(&self) -> bool {
        matches!(self, Self::Relay(b'S' | b'Q' | b'F'))
    }
}

/// Reads a stream into whole messages, except the kinds that may be large
/// and are only passed on (rows and copy data), which go on in pieces.
#[derive(Default)]
pub(super) struct Framer {
    pub(super) buf: BytesMut,
    /// Bytes of a passed-on message still to come.
    pub(super) passing: usize,
}

pub(super) enum Piece {
    Whole(u8, Bytes),
    Part(Bytes),
}

impl Framer {
    pub(super) fn next(&mut self, streamed: &[u8]) -> Result<Option<Piece>, String> {
        if self.passing > 0 {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let n = self.passing.min(self.buf.len());
            self.passing -= n;
            return Ok(Some(Piece::Part(self.buf.split_to(n).freeze())));
        }
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(format!(
                "a {len}-byte message; this does not look like PostgreSQL"
            ));
        }
        let total = len + 1;
        if self.buf.len() >= total {
            return Ok(Some(Piece::Whole(kind, self.buf.split_to(total).freeze())));
        }
        if streamed.contains(&kind) {
            self.passing = total;
            return self.next(streamed);
        }
        self.buf.reserve(total - self.buf.len());
        Ok(None)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.passing == 0
    }
}

/// The C string at the start of `b`, and what follows it.
pub(super) fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

pub(super) fn message(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    let mut out = Vec::with_capacity(len + 1);
    out.push(kind);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A simple `Query`.
pub(super) fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &[sql.as_bytes(), &[0]])
}

/// The server-side name of a statement: after its text and parameter
/// types, so that clients preparing the same statement share it.
pub(super) fn server_name(parse_rest: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parse_rest);
    format!("rdsconn_{}", crate::ca::hex(&digest.as_ref()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_passes_rows_in_pieces() {
        let mut f = Framer::default();
        let row = message(b'D', &[&[0; 100]]);
        f.buf.extend_from_slice(&row[..50]);
        let Ok(Some(Piece::Part(p))) = f.next(b"D") else {
            panic!("a piece")
        };
        assert_eq!(p.len(), 50);
        f.buf.extend_from_slice(&row[50..]);
        f.buf.extend_from_slice(&message(b'Z', &[b"I"]));
        let Ok(Some(Piece::Part(p))) = f.next(b"D") else {
            panic!("the rest")
        };
        assert_eq!(p.len(), row.len() - 50);
        assert!(matches!(f.next(b"D"), Ok(Some(Piece::Whole(b'Z', _)))));
        assert!(f.is_empty());
        f.buf.extend_from_slice(&[b'Q', 0, 0, 0, 2]);
        assert!(f.next(b"D").is_err());
    }
}
