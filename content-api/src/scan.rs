//! Virus scanning through clamd's `INSTREAM` protocol: the object is streamed from the
//! store to clamd in chunks, never held whole.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Largest chunk sent to clamd at once (it refuses chunks above its `StreamMaxLength`).
const CHUNK_BYTES: usize = 64 * 1024;
/// Longest reply read from clamd.
const MAX_REPLY_BYTES: usize = 4096;

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Clean,
    /// These signatures matched.
    Infected(Vec<String>),
}

/// A scan that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// clamd could not be reached or the connection broke.
    #[error("clamd unreachable: {0}")]
    Io(#[from] std::io::Error),
    /// clamd did not answer in time.
    #[error("clamd timed out")]
    Timeout,
    /// clamd answered with an error (e.g. the size limit).
    #[error("clamd error: {0}")]
    Clamd(String),
    /// The object could not be read from the store.
    #[error("reading the object: {0}")]
    Read(String),
}

/// A clamd at `host:port`.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: String,
    timeout: Duration,
}

impl Clamd {
    /// clamd at `address`; each command must finish within `timeout`.
    pub fn new(address: impl Into<String>, timeout: Duration) -> Self {
        Self {
            address: address.into(),
            timeout,
        }
    }

    /// The engine and signature version (`zVERSION`), e.g. `ClamAV 1.0.7/…`.
    pub async fn version(&self) -> Result<String, ScanError> {
        let reply = self.command(b"zVERSION\0").await?;
        Ok(reply)
    }

    /// `zPING` → `PONG`.
    pub async fn ping(&self) -> Result<(), ScanError> {
        match self.command(b"zPING\0").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(ScanError::Clamd(other.to_owned())),
        }
    }

    async fn command(&self, command: &[u8]) -> Result<String, ScanError> {
        tokio::time::timeout(self.timeout, async {
            let mut socket = TcpStream::connect(&self.address).await?;
            socket.write_all(command).await?;
            read_reply(&mut socket).await
        })
        .await
        .map_err(|_| ScanError::Timeout)?
    }

    /// Scans the bytes of `stream` (`zINSTREAM`: length-prefixed chunks, a zero length
    /// to end).
    pub async fn scan<S, E>(&self, stream: S) -> Result<Verdict, ScanError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        tokio::time::timeout(self.timeout, async {
            let mut socket = TcpStream::connect(&self.address).await?;
            socket.write_all(b"zINSTREAM\0").await?;
            let mut stream = stream;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ScanError::Read(e.to_string()))?;
                for part in chunk.chunks(CHUNK_BYTES) {
                    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
                    socket.write_all(&len.to_be_bytes()).await?;
                    if let Err(err) = socket.write_all(part).await {
                        // clamd closes the stream when a size limit is hit; its reply says so.
                        return match read_reply(&mut socket).await {
                            Ok(reply) => parse_scan_reply(&reply),
                            Err(_) => Err(err.into()),
                        };
                    }
                }
            }
            socket.write_all(&0u32.to_be_bytes()).await?;
            let reply = read_reply(&mut socket).await?;
            parse_scan_reply(&reply)
        })
        .await
        .map_err(|_| ScanError::Timeout)?
    }
}

async fn read_reply(socket: &mut TcpStream) -> Result<String, ScanError> {
    let mut reply = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) || reply.len() >= MAX_REPLY_BYTES {
            break;
        }
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_owned())
}

/// `stream: OK`, `stream: <signature> FOUND`, or `<message> ERROR`.
fn parse_scan_reply(reply: &str) -> Result<Verdict, ScanError> {
    let body = reply.strip_prefix("stream:").map_or(reply, str::trim);
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = body.strip_suffix(" FOUND") {
        return Ok(Verdict::Infected(vec![signature.trim().to_owned()]));
    }
    Err(ScanError::Clamd(if reply.is_empty() {
        "empty reply".into()
    } else {
        reply.chars().take(200).collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_clamd_writes_them() {
        assert_eq!(parse_scan_reply("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_scan_reply("stream: Eicar-Test-Signature FOUND").unwrap(),
            Verdict::Infected(vec!["Eicar-Test-Signature".into()])
        );
        assert!(matches!(
            parse_scan_reply("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::Clamd(_))
        ));
        assert!(parse_scan_reply("").is_err());
    }
}
