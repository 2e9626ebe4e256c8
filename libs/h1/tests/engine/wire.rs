//! A raw HTTP/1.1 client for the engine's tests: bytes written as given, answers read
//! off the wire as they are (framing included), so nothing is normalised away.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One response as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was chunked and its last chunk arrived.
    pub chunked: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// A connection to a server on loopback.
    pub async fn connect(port: u16) -> Self {
        Self {
            stream: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at EOF.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no answer within 10 s"),
        }
    }

    /// Reads one response (a HEAD answer has no body: `head_request`).
    pub async fn answer_to(&mut self, head_request: bool) -> Option<Answer> {
        let (status, headers, len) = loop {
            let mut h = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut h);
            if let httparse::Status::Complete(len) = r.parse(&self.buf).unwrap() {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.code.unwrap(), headers, len);
            }
            if !self.fill().await {
                return None;
            }
        };
        self.buf.drain(..len);
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Some(answer);
        }
        if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "body cut off");
            }
            answer.body = self.buf.drain(..len).collect();
        } else if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                    if !self.fill().await {
                        return Some(answer);
                    }
                    continue;
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..end]).unwrap(), 16)
                        .unwrap();
                while self.buf.len() < end + 2 + size + 2 {
                    if !self.fill().await {
                        return Some(answer);
                    }
                }
                answer
                    .body
                    .extend_from_slice(&self.buf[end + 2..end + 2 + size]);
                self.buf.drain(..end + 2 + size + 2);
                if size == 0 {
                    answer.chunked = true;
                    return Some(answer);
                }
            }
        } else {
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        Some(answer)
    }

    pub async fn answer(&mut self) -> Answer {
        self.answer_to(false).await.expect("an answer")
    }

    /// Whether the server has closed the connection (nothing more to read).
    pub async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}
