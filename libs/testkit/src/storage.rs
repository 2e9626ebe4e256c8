//! What content-api's tests run against: clamd with a signature database made here (no
//! internet for freshclam: an MD5 signature of the EICAR test file), and Azurite (the
//! Azure Blob Storage emulator, from npm) with containers created by signed requests.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use aws_lc_rs::hmac;
use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::{DataDir, find_binary, free_port, log_tail, wait_port};

/// The EICAR anti-virus test file (68 bytes): every scanner reports it, it harms nothing.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// MD5 of [`EICAR`], the hash signature clamd is given.
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
/// The signature name clamd reports for [`EICAR`].
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";

/// A clamd on a loopback port whose only signature is [`EICAR`]'s.
#[derive(Debug)]
pub struct ClamdServer {
    port: u16,
    dir: DataDir,
    child: Option<Child>,
}

impl ClamdServer {
    /// Starts one and waits until it accepts connections (clamd loads its database
    /// first: a few seconds).
    pub fn start() -> Self {
        let dir = DataDir::temp();
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("clamd db dir");
        std::fs::write(
            db.join("eicar.hdb"),
            format!("{EICAR_MD5}:{}:{EICAR_SIGNATURE}\n", EICAR.len()),
        )
        .expect("write signature");
        let port = free_port();
        let config = dir.path().join("clamd.conf");
        std::fs::write(
            &config,
            format!(
                "Foreground yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\n\
                 StreamMaxLength 1024M\nMaxFileSize 1024M\nMaxScanSize 1024M\nLogFile {}\n",
                db.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .expect("write clamd.conf");
        let child = Command::new(find_binary("clamd"))
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clamd");
        let server = Self {
            port,
            dir,
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !crate::port_open(port) {
            assert!(
                std::time::Instant::now() < deadline,
                "clamd did not start:\n{}",
                log_tail(&server.dir.path().join("clamd.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `127.0.0.1:<port>` (what `CLAMD_ADDRESS` takes).
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ClamdServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's blob service on a loopback port, data in a temporary directory.
#[derive(Debug)]
pub struct AzuriteServer {
    port: u16,
    _dir: DataDir,
    child: Option<Child>,
}

impl AzuriteServer {
    /// Starts `azurite-blob` (`bin`: npm's `node_modules/.bin/azurite-blob`) and waits
    /// until it accepts connections.
    pub fn start(bin: &Path) -> Self {
        let dir = DataDir::temp();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        wait_port(port, true, "azurite-blob");
        Self {
            port,
            _dir: dir,
            child: Some(child),
        }
    }

    /// The account's blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }
}

impl Drop for AzuriteServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `AZURE_*` settings that point object_store (and content-api's `BLOB_STORE_URL=az://…`)
/// at the Azurite whose account endpoint is `endpoint`.
pub fn azurite_settings(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT.to_owned()),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.to_owned()),
        ("AZURE_STORAGE_ENDPOINT", endpoint.to_owned()),
        ("AZURE_ALLOW_HTTP", "true".to_owned()),
    ]
}

/// Creates container `name` at the account endpoint `endpoint` (Shared Key signed `PUT
/// ?restype=container`; object_store cannot create containers). An existing one is fine.
pub fn create_container(endpoint: &str, name: &str) {
    let rest = endpoint
        .strip_prefix("http://")
        .expect("an http:// Azurite endpoint");
    let (host, account_path) = rest.split_once('/').expect("endpoint with the account");
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let resource = format!("/{AZURITE_ACCOUNT}/{account_path}/{name}\nrestype:container");
    let to_sign =
        format!("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}");
    let key = hmac::Key::new(
        hmac::HMAC_SHA256,
        &STANDARD.decode(AZURITE_KEY).expect("key is base64"),
    );
    let signature = STANDARD.encode(hmac::sign(&key, to_sign.as_bytes()));
    let request = format!(
        "PUT /{account_path}/{name}?restype=container HTTP/1.1\r\nHost: {host}\r\n\
         x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
         Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(host).expect("connect to Azurite");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply.split_whitespace().nth(1).unwrap_or_default();
    assert!(
        status == "201" || status == "409",
        "creating container {name} failed: {}",
        reply.lines().take(12).collect::<Vec<_>>().join("\n")
    );
}

/// The npm `.bin` script of Azurite's blob service under `node_dir` (the harness's npm
/// directory).
pub fn azurite_bin(node_dir: &Path) -> PathBuf {
    node_dir
        .join("node_modules")
        .join(".bin")
        .join("azurite-blob")
}
