//! A scripted HTTP/1.1 server on 127.0.0.1 for `ca fetch` tests: each
//! request gets the reply currently configured, and every request is
//! recorded so tests can check conditional-GET headers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with ETag and Last-Modified; 304 when If-None-Match matches.
    Bundle { body: Vec<u8>, etag: String },
    /// 200 with this body; `content_length: false` streams it until close.
    Body { body: Vec<u8>, content_length: bool },
    /// This status with an empty body.
    Status(u16),
    /// Accept the connection, never answer.
    Hang,
    /// A file server: 200 with the body named by the request's path, 404
    /// for any other path.
    Files(Arc<HashMap<String, Vec<u8>>>),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
}

pub struct Server {
    pub addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<Mutex<Vec<Request>>>,
    delay: Arc<Mutex<Duration>>,
}

impl Server {
    pub fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(Mutex::new(reply));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (r, q, d) = (
            Arc::clone(&reply),
            Arc::clone(&requests),
            Arc::clone(&delay),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, q, d) = (Arc::clone(&r), Arc::clone(&q), Arc::clone(&d));
                std::thread::spawn(move || serve(stream, &r, &q, &d));
            }
        });
        Self {
            addr,
            reply,
            requests,
            delay,
        }
    }

    /// The value for `RDSCONN_CA_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    reply: &Mutex<Reply>,
    requests: &Mutex<Vec<Request>>,
    delay: &Mutex<Duration>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let if_none_match = headers.get("if-none-match").cloned();
    requests.lock().unwrap().push(Request {
        path: path.clone(),
        headers,
    });
    std::thread::sleep(*delay.lock().unwrap());
    let reply = reply.lock().unwrap().clone();
    let mut out = stream;
    let _ = match reply {
        Reply::Bundle { body, etag } => {
            if if_none_match.as_deref() == Some(etag.as_str()) {
                write!(
                    out,
                    "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                )
            } else {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nETag: {etag}\r\n\
                     Last-Modified: Tue, 20 May 2025 10:00:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|()| out.write_all(&body))
            }
        }
        Reply::Body {
            body,
            content_length,
        } => {
            let len = if content_length {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                String::new()
            };
            write!(out, "HTTP/1.1 200 OK\r\n{len}Connection: close\r\n\r\n")
                .and_then(|()| out.write_all(&body))
        }
        Reply::Status(code) => write!(
            out,
            "HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Reply::Files(files) => match files.get(&path) {
            Some(body) => write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .and_then(|()| out.write_all(body)),
            None => write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        },
        Reply::Hang => {
            std::thread::sleep(Duration::from_mins(2));
            Ok(())
        }
    };
}
