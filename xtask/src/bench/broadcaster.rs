//! `cargo xtask bench broadcaster`: deliveries per second to a loopback sink, signed and
//! acknowledged at least once, next to (a) a bare hyper client POSTing the same payload
//! at the same concurrency and (b) a minimal Python bridge in the seed's style (nats-py +
//! httpx, one POST at a time), all in the same run against the same sink; then the
//! event-to-delivery lag at 1,000 events/s. A "NATS floor" row runs the JetStream work the
//! spec prescribes per delivery (fan-out into IC_DELIVERIES, acks, pulls) with no HTTP
//! call: the most any broadcaster built that way can deliver on this machine.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use async_nats::jetstream;
use ic_events::{CloudEvent, NATS_MSG_ID};
use ic_testkit::{NatsServer, free_port};
use serde_json::{Value, json};

use crate::{cargo, deps, run, target_dir};

/// Events delivered by the broadcaster and by the raw client.
const EVENTS: usize = 20_000;
/// Events delivered by the Python bridge (it is much slower).
const PYTHON_EVENTS: usize = 2_000;
/// Concurrent calls: the subscription's `max_concurrency` and the raw client's.
const CONCURRENCY: usize = 32;
/// The lag measurement: events per second, for this many seconds.
const LAG_RATE: usize = 1_000;
const LAG_SECONDS: usize = 10;
/// The subscription's secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The Python bridge: pull from JetStream, sign, POST, ack, one at a time.
const PYTHON_BRIDGE: &str = r#"
import asyncio, base64, hashlib, hmac, sys, time
import httpx, nats
from nats.errors import TimeoutError

async def main():
    nats_url, url, n, secret = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    key = base64.b64decode(secret.split("_", 1)[1])
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    sub = await js.pull_subscribe("ic.benchpy.>", durable="py-bridge", stream="IC_EVENTS")
    done = 0
    async with httpx.AsyncClient() as client:
        while done < n:
            try:
                messages = await sub.fetch(10, timeout=5)
            except TimeoutError:
                continue
            for m in messages:
                webhook_id = (m.headers or {}).get("Nats-Msg-Id", "x")
                ts = str(int(time.time()))
                digest = hmac.new(key, f"{webhook_id}.{ts}.".encode() + m.data, hashlib.sha256).digest()
                response = await client.post(url, content=m.data, headers={
                    "content-type": "application/json",
                    "webhook-id": webhook_id,
                    "webhook-timestamp": ts,
                    "webhook-signature": "v1," + base64.b64encode(digest).decode(),
                })
                response.raise_for_status()
                await m.ack()
                done += 1
    await nc.close()

asyncio.run(main())
"#;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<Process> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Process)
        .with_context(|| format!("starting {what}"))
}

fn event(subject_domain: &str) -> CloudEvent {
    CloudEvent::new(
        "services-api",
        subject_domain,
        "service",
        "published",
        "6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001",
        json!({
            "service_id": "6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001",
            "title": "Annual Health Check",
            "description": "A full yearly check-up with blood tests and a clinic review.",
            "slug": "annual-health-check",
            "delivery_mode": "outpatient_service",
            "publishing_status": "published",
        }),
    )
}

async fn publish_one(
    js: &jetstream::Context,
    event: &CloudEvent,
) -> anyhow::Result<jetstream::context::PublishAckFuture> {
    let subject = event.subject_for_type().context("an event type")?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_MSG_ID, event.id.to_string().as_str());
    Ok(js
        .publish_with_headers(subject, headers, serde_json::to_vec(event)?.into())
        .await?)
}

async fn publish_many(js: &jetstream::Context, domain: &str, n: usize) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(1000);
    for _ in 0..n {
        acks.push(publish_one(js, &event(domain)).await?);
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

struct Sink {
    base: String,
    client: reqwest::Client,
}

impl Sink {
    async fn stats(&self) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}/stats", self.base))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/reset", self.base))
            .send()
            .await?;
        Ok(())
    }

    /// Deliveries per second between the first and the `n`-th delivery.
    async fn rate_until(&self, n: usize, limit: Duration) -> anyhow::Result<f64> {
        let deadline = Instant::now() + limit;
        let mut first: Option<(Instant, u64)> = None;
        loop {
            let count = self.stats().await?["count"].as_u64().unwrap_or_default();
            let now = Instant::now();
            if first.is_none() && count > 0 {
                first = Some((now, count));
            }
            if count as usize >= n {
                let (t0, c0) = first.unwrap_or((now, 0));
                let seconds = now.duration_since(t0).as_secs_f64().max(1e-3);
                return Ok((count - c0) as f64 / seconds);
            }
            if now > deadline {
                bail!("only {count} of {n} deliveries arrived in {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn broadcaster() -> anyhow::Result<()> {
    deps::ensure_packages(&[("nats-server", "nats-server")])?;
    eprintln!("==> building the broadcaster and its benchmark tools (release)");
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "broadcaster",
        "--bins",
        "--example",
        "bench_sink",
        "--example",
        "raw_post",
        "--example",
        "nats_floor",
    ]);
    run(build, "cargo build --release")?;
    let python = deps::python_venv(&target_dir().join("ic-bench-venv"), &["nats-py", "httpx"])?;
    let release = target_dir().join("release");
    let dir = tempfile_dir()?;

    let nats = NatsServer::start();
    let sink_port = free_port();
    let _sink = spawn(
        Command::new(release.join("examples").join("bench_sink")).arg(sink_port.to_string()),
        "bench_sink",
    )?;
    let sink_url = format!("http://127.0.0.1:{sink_port}/hook");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let sink = Sink {
            base: format!("http://127.0.0.1:{sink_port}"),
            client: reqwest::Client::new(),
        };
        wait_http(&format!("{}/stats", sink.base)).await?;
        let client = async_nats::connect(nats.url()).await?;
        let js = jetstream::new(client);
        let mut streams = ic_events::streams::all();
        streams.extend(ic_events::streams::broadcaster());
        ic_events::streams::ensure_all(&js, streams).await.map_err(|e| anyhow::anyhow!(e))?;

        eprintln!("==> raw hyper client: {EVENTS} POSTs, {CONCURRENCY} at a time");
        let payload = dir.join("payload.json");
        std::fs::write(&payload, serde_json::to_vec(&event("bench"))?)?;
        sink.reset().await?;
        let out = Command::new(release.join("examples").join("raw_post"))
            .arg(&sink_url)
            .arg(EVENTS.to_string())
            .arg(CONCURRENCY.to_string())
            .arg(&payload)
            .output()
            .context("running raw_post")?;
        let raw: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("raw_post's rate")?;

        eprintln!("==> NATS floor: the JetStream work of {EVENTS} deliveries, no HTTP");
        publish_many(&js, "floor", EVENTS).await?;
        let out = Command::new(release.join("examples").join("nats_floor"))
            .arg(nats.url())
            .arg(EVENTS.to_string())
            .arg("floor")
            .output()
            .context("running nats_floor")?;
        let floor: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("nats_floor's rate ({})", String::from_utf8_lossy(&out.stderr).trim()))?;

        eprintln!("==> broadcaster: {EVENTS} events through IC_EVENTS → IC_DELIVERIES → the sink");
        publish_many(&js, "bench", EVENTS).await?;
        sink.reset().await?;
        let subscriptions = dir.join("subscriptions.yaml");
        std::fs::write(
            &subscriptions,
            format!("- {{id: sink, url: '{sink_url}', secret: {SECRET}, max_concurrency: {CONCURRENCY}}}\n"),
        )?;
        let port = free_port();
        let broadcaster = spawn(
            Command::new(release.join("broadcaster"))
                .env("NATS_URL", nats.url())
                .env("WEBHOOK_SUBSCRIPTIONS_FILE", &subscriptions)
                .env("BROADCASTER_SUBJECTS", "ic.bench.>")
                .env("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true")
                .env("BROADCASTER_PORT", port.to_string())
                .env("BROADCASTER_METRICS_PORT", free_port().to_string())
                .env("RUST_LOG", "warn"),
            "broadcaster",
        )?;
        let ours = sink.rate_until(EVENTS, Duration::from_secs(300)).await?;

        eprintln!("==> lag at {LAG_RATE} events/s for {LAG_SECONDS} s");
        sink.reset().await?;
        let total = LAG_RATE * LAG_SECONDS;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LAG_RATE as u64));
        // Acknowledgements are awaited aside: the client bounds how many may be pending.
        let mut acks = Vec::with_capacity(total);
        for _ in 0..total {
            tick.tick().await;
            acks.push(tokio::spawn(publish_one(&js, &event("bench")).await?.into_future()));
        }
        for ack in acks {
            ack.await??;
        }
        sink.rate_until(total, Duration::from_secs(120)).await?;
        let lag = sink.stats().await?;
        drop(broadcaster);

        eprintln!("==> Python bridge (nats-py + httpx, one POST at a time): {PYTHON_EVENTS} events");
        publish_many(&js, "benchpy", PYTHON_EVENTS).await?;
        sink.reset().await?;
        let _bridge = spawn(
            Command::new(&python).args([
                "-c",
                PYTHON_BRIDGE,
                &nats.url(),
                &sink_url,
                &PYTHON_EVENTS.to_string(),
                SECRET,
            ]),
            "the Python bridge",
        )?;
        let python_rate = sink.rate_until(PYTHON_EVENTS, Duration::from_secs(300)).await?;

        println!("\nbroadcaster (2 cores shared by NATS, the sink and the deliverer; {CONCURRENCY} concurrent calls)");
        println!("  {:<44} {:>12}", "", "deliveries/s");
        println!("  {:<44} {:>12.0}", "broadcaster (signed, at-least-once acks)", ours);
        println!("  {:<44} {:>12.0}", "raw hyper client (same payload, no NATS)", raw);
        println!("  {:<44} {:>12.0}", "Python bridge (nats-py + httpx, 1 at a time)", python_rate);
        println!("  {:<44} {:>12.0}", "NATS floor (the spec's JetStream work, no HTTP)", floor);
        println!(
            "  broadcaster / raw client: {:.2}x (target >= 0.6x)   broadcaster / Python bridge: {:.1}x (target >= 20x)",
            ours / raw,
            ours / python_rate
        );
        println!(
            "  NATS floor / raw client: {:.2}x (no broadcaster following the spec's design can pass this ratio here)",
            floor / raw
        );
        println!(
            "  event-to-delivery lag at {LAG_RATE} events/s: p50 {:.1} ms, p99 {:.1} ms (target p99 <= 50 ms)",
            lag["p50_ms"].as_f64().unwrap_or(f64::NAN),
            lag["p99_ms"].as_f64().unwrap_or(f64::NAN)
        );
        Ok::<(), anyhow::Error>(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ic-bench-broadcaster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn wait_http(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(url).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing answers at {url}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
