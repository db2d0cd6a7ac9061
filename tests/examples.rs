//! The examples as processes, run as a user runs them: `examples/hyper.rs`,
//! `examples/axum.rs` (feature `axum`), `examples/warp.rs` (feature `warp`),
//! `examples/sensors` and `examples/aircraft`, built by cargo with this test's features.
//!
//! - `bad_values_exit_2_with_one_line`: a value an example cannot use (`ADDR=garbage`,
//!   `INTERVAL_MS=abc`, `TRUST_PROXY=1`, ...) ends it with status 2 and exactly one line
//!   on stderr naming the variable and the value, nothing on stdout, and no panic; the
//!   line says what is wrong (a port out of range, a URL's `http://` to drop).
//! - `a_taken_port_exits_2_naming_addr`: so does a port another socket holds, the line
//!   naming `ADDR`, its value and the system's error.
//! - `every_example_serves_on_localhost_and_logs`: `ADDR=localhost:0` serves (a host
//!   name is resolved), the start-up is logged on stderr, and the library's own events
//!   reach the log as `RUST_LOG` asks (`tower_sse=debug`: a malformed `lastEventId`,
//!   which the library logs at debug).
//! - `the_countdown_ends_with_204`: axum's `/countdown` counts down, resumes from
//!   `Last-Event-ID`, and answers a client that saw 0 with 204, which stops an
//!   `EventSource`.
//! - `publish_answers_json_with_the_id`: axum's and warp's `/publish` answer
//!   `{"id":<id>}`, the id a subscriber then receives the event with.
//! - `the_hyper_resume_hint_resumes`: an id copied from the hyper example's stream, sent
//!   back as `Last-Event-ID` as its doc says, resumes right after it; a made-up small id
//!   gets `stream-reset`.
//! - `the_per_client_cap_trusts_only_the_named_proxy`: with `TRUST_PROXY`, streams
//!   through the proxy are capped per forwarded address, separately; a client that is
//!   not the proxy is capped under its own address whatever it forwards. Without it, one
//!   address opens streams up to `MAX_STREAMS`, and by default more than any old
//!   per-client cap (65).
//! - `hostile_last_event_ids_get_a_normal_answer`: `Last-Event-ID` values such as
//!   `18446744073709551615`, `-1`, a thousand nines or `abc`, as a header and as the
//!   `lastEventId` query, get a normal answer from every example (an event stream that
//!   flows, or axum's 204 after `0`), and the example goes on serving without a panic.
//! - `the_connection_cap_follows_max_streams`: with `MAX_STREAMS=20000`, the capped
//!   examples give `tower_sse::serve` room for 20,000 connections and more, or for all
//!   that the open-file limit allows less a reserve (not its default, 7/8 of the limit).
//! - `a_serving_aircraft_instance_names_its_redis` (feature `redis`): with `REDIS_URL`
//!   at a port where nothing listens, the instance logs the Redis it uses (password
//!   hidden), the hub's warning that it cannot reach it, and its own that no report has
//!   come.
//!
//! No sleep synchronises anything: each step waits for a log line, a response or an
//! event, under a generous hang guard. Every child is killed at the end (and on a
//! failure, when dropped).

#![cfg(feature = "serve")]

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

use support::{H1, empty, events, get, h1_from};

/// The hang guard of every wait; never a duration the test asserts.
const GUARD: Duration = Duration::from_secs(90);

/// Every variable an example reads, removed from what a child inherits.
const VARIABLES: &[&str] = &[
    "ADDR",
    "PORT",
    "RUST_LOG",
    "MAX_STREAMS",
    "PER_CLIENT",
    "TRUST_PROXY",
    "INTERVAL_MS",
    "AIRCRAFT",
    "SPEED",
    "SIMULATE",
    "REDIS_URL",
    "LEAFLET_DIR",
];

// ---- The examples' binaries ------------------------------------------------------------

/// The examples this test's features build.
fn examples() -> Vec<&'static str> {
    let mut names = vec!["hyper", "sensors", "aircraft"];
    if cfg!(feature = "axum") {
        names.push("axum");
    }
    if cfg!(feature = "warp") {
        names.push("warp");
    }
    names
}

/// The examples with a stream cap (`MAX_STREAMS`, `PER_CLIENT`, `TRUST_PROXY`), and the
/// URL of an event stream on each.
fn capped_examples() -> Vec<(&'static str, &'static str)> {
    let mut names = vec![("hyper", "/events?topic=clock")];
    if cfg!(feature = "axum") {
        names.push(("axum", "/events?topic=chat"));
    }
    if cfg!(feature = "warp") {
        names.push(("warp", "/events"));
    }
    names
}

/// The example `name`'s binary, built (once, for every example) with the features this
/// test was built with; a no-op when `cargo test` has built them already.
fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| support::build_examples(&examples()));
    let binary = dir.join(name);
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

fn command(name: &str, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary(name));
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

// ---- An example that ends at once ------------------------------------------------------

/// What an example that refused to start left: its status, stdout and stderr.
struct Refused {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run_to_exit(name: &str, envs: &[(&str, &str)]) -> Refused {
    let child = command(name, envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} {envs:?} did not exit"))
        .unwrap();
    Refused {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Fails unless `name` with `envs` exits with status 2 and one line on stderr that
/// starts with its name and holds every one of `says`.
async fn refuses(name: &str, envs: &[(&str, &str)], says: &[&str]) {
    let refused = run_to_exit(name, envs).await;
    let what = format!(
        "{name} {envs:?}: status {:?}, stderr {:?}",
        refused.code, refused.stderr
    );
    assert_eq!(refused.code, Some(2), "{what}");
    assert!(!refused.stderr.contains("panicked"), "{what}");
    assert!(!refused.stderr.contains("backtrace"), "{what}");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}");
    assert!(lines[0].starts_with(&format!("{name}: ")), "{what}");
    for said in says {
        assert!(lines[0].contains(said), "{what}: no {said:?}");
    }
    assert_eq!(refused.stdout, "", "{what}: stdout");
}

// ---- An example that serves ------------------------------------------------------------

/// A running example: its stderr, line by line as it comes, and the address it said it
/// listens on. Killed when stopped or dropped.
struct Running {
    name: &'static str,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Running {
    async fn start(name: &'static str, envs: &[(&str, &str)]) -> Running {
        let mut child = command(name, envs)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let log = log.clone();
            async move {
                let mut reader = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    log.lock().unwrap().push(line.clone());
                    let _ = send.send(line);
                }
            }
        });
        let mut running = Running {
            name,
            child,
            lines,
            log,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let line = running.line("listening on http://").await;
        let (_, url) = line.split_once("listening on http://").unwrap();
        let authority = url.split('/').next().unwrap();
        running.addr = authority.parse().expect("an address after http://");
        running
    }

    /// Waits for a line that holds every one of `parts` (one logged already, or the
    /// next such line), and gives it.
    async fn line_with(&mut self, parts: &[&str]) -> String {
        let holds = |line: &str| parts.iter().all(|part| line.contains(part));
        if let Some(line) = self.log.lock().unwrap().iter().find(|line| holds(line)) {
            return line.clone();
        }
        let found = timeout(GUARD, async {
            while let Some(line) = self.lines.recv().await {
                if holds(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "{} logged no line with {parts:?}: {:#?}",
                self.name,
                self.log.lock().unwrap()
            ),
        }
    }

    async fn line(&mut self, part: &str) -> String {
        self.line_with(&[part]).await
    }

    fn logged(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `GET path` on a new connection from `from` (a loopback address) with `headers`.
async fn stream_from(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (H1, Response<Incoming>) {
    let mut client = timeout(GUARD, h1_from(from, addr)).await.expect("connects");
    let mut request = get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = timeout(GUARD, client.send(request.body(empty()).unwrap()))
        .await
        .expect("an answer");
    (client, response)
}

async fn stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
    let (client, response) = stream_from(addr, [127, 0, 0, 1].into(), path, headers).await;
    // The connection lives on while the body is read.
    drop(client.sender);
    response
}

/// `POST path` with `body`: the status, the content type and the answer.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (StatusCode, String, String) {
    let socket = timeout(GUARD, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connects")
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::post(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = timeout(GUARD, sender.send_request(request))
        .await
        .unwrap_or_else(|_| panic!("no answer to POST {path}"))
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = timeout(GUARD, response.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("the whole answer to POST {path}"))
        .unwrap()
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

// ---- The tests -------------------------------------------------------------------------

#[tokio::test]
async fn bad_values_exit_2_with_one_line() {
    // (example, variable, value, what the line says is expected)
    let mut cases: Vec<(&str, &str, &str, &str)> = Vec::new();
    for name in examples() {
        cases.extend([
            (name, "ADDR", "garbage", "host:port"),
            (name, "ADDR", "localhost", "host:port"),
            (
                name,
                "ADDR",
                "127.0.0.1:99999",
                "the port 99999 is out of range",
            ),
            (
                name,
                "ADDR",
                "[::1]:70000",
                "the port 70000 is out of range",
            ),
            (name, "ADDR", "http://127.0.0.1:3000", "drop the `http://`"),
            (
                name,
                "ADDR",
                "https://localhost:3000/",
                "drop the `https://`",
            ),
            (name, "ADDR", "no-such-host.invalid:3000", "cannot resolve"),
            (name, "RUST_LOG", "info,=nonsense=", "log filter"),
        ]);
    }
    for (name, _) in capped_examples() {
        cases.extend([
            (name, "TRUST_PROXY", "1", "IP addresses"),
            (name, "MAX_STREAMS", "many", "a number"),
            (name, "PER_CLIENT", "0", "a number from 1"),
        ]);
    }
    cases.extend([
        ("sensors", "INTERVAL_MS", "abc", "a number"),
        ("sensors", "INTERVAL_MS", "5", "from 10"),
        ("aircraft", "AIRCRAFT", "lots", "a number"),
        ("aircraft", "SPEED", "NaN", "a number"),
        ("aircraft", "SIMULATE", "maybe", "1 or 0"),
    ]);
    if cfg!(feature = "redis") {
        cases.push(("aircraft", "REDIS_URL", "not a url", "Redis URL"));
    }
    let runs = cases
        .iter()
        .map(|&(name, variable, value, expected)| async move {
            // As a user would type it: quoted when it has blanks.
            let shown = if value.contains(' ') {
                format!("{variable}={value:?}")
            } else {
                format!("{variable}={value}")
            };
            refuses(name, &[(variable, value)], &[&shown, expected]).await;
        });
    futures_util::future::join_all(runs).await;
    eprintln!("examples: {} bad values refused", cases.len());
}

#[tokio::test]
async fn a_taken_port_exits_2_naming_addr() {
    let taken = StdListener::bind("127.0.0.1:0").unwrap();
    let value = taken.local_addr().unwrap().to_string();
    let says = [&*format!("ADDR={value}"), "cannot listen", "os error"];
    for name in examples() {
        refuses(name, &[("ADDR", &value)], &says).await;
    }
    drop(taken);
}

#[tokio::test]
async fn every_example_serves_on_localhost_and_logs() {
    for name in examples() {
        let envs = [
            ("ADDR", "localhost:0"),
            ("RUST_LOG", "info,tower_sse=debug"),
        ];
        let mut example = Running::start(name, &envs).await;
        assert!(example.addr.ip().is_loopback(), "{name}: {}", example.addr);
        let started = example.logged().join("\n");
        assert!(started.contains(" INFO "), "{name}: {started}");

        // A page or a stream, served.
        let path = match name {
            "hyper" => "/events?topic=clock",
            "warp" => "/events",
            _ => "/",
        };
        let response = stream(example.addr, path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{name} {path}");

        // The library's line about a malformed id, at the level RUST_LOG asks for.
        let topic = if name == "hyper" { "topic=clock&" } else { "" };
        let path = format!("/events?{topic}lastEventId=%FF");
        let _answer = stream(example.addr, &path, &[]).await;
        example
            .line_with(&["DEBUG", "tower_sse", "malformed last event id"])
            .await;
        example.stop().await;
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_countdown_ends_with_204() {
    let example = Running::start("axum", &[("ADDR", "127.0.0.1:0")]).await;
    let addr = example.addr;

    // From the start: 10 first.
    let response = stream(addr, "/countdown", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut countdown = events(response);
    let first = timeout(GUARD, countdown.next())
        .await
        .expect("the countdown's first event")
        .unwrap();
    assert_eq!((first.id.as_str(), first.data.as_str()), ("10", "10"));
    drop(countdown);

    // A browser that reconnects after 2 gets 1 and 0, and the stream ends.
    let response = stream(addr, "/countdown", &[("last-event-id", "2")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rest: Vec<_> = timeout(GUARD, events(response).collect::<Vec<_>>())
        .await
        .expect("the countdown ends");
    let ids: Vec<&str> = rest.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "0"]);

    // It reconnects with 0 and is told to stop: 204, which closes an EventSource.
    let response = stream(addr, "/countdown", &[("last-event-id", "0")]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    example.stop().await;
}

#[tokio::test]
async fn publish_answers_json_with_the_id() {
    let mut routes = Vec::new();
    if cfg!(feature = "axum") {
        routes.push(("axum", "/events?topic=chat", "/publish/chat"));
    }
    if cfg!(feature = "warp") {
        routes.push(("warp", "/events", "/publish"));
    }
    for (name, events_path, publish_path) in routes {
        let example = Running::start(name, &[("ADDR", "127.0.0.1:0")]).await;
        let response = stream(example.addr, events_path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut received = events(response);

        let (status, content_type, body) = post(example.addr, publish_path, "hello").await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(content_type, "application/json", "{name}");
        let answer: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{name} answered {body:?}, not JSON"));
        let id = answer["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {body}"));
        assert_eq!(answer.as_object().unwrap().len(), 1, "{name}: {body}");

        let event = timeout(GUARD, received.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: the published event"))
            .unwrap();
        assert_eq!(event.id, id.to_string(), "{name}");
        assert_eq!(event.data, "hello", "{name}");
        example.stop().await;
    }
}

#[tokio::test]
async fn the_hyper_resume_hint_resumes() {
    let example = Running::start("hyper", &[("ADDR", "127.0.0.1:0")]).await;
    let addr = example.addr;
    let path = "/events?topic=clock";

    let mut clock = events(stream(addr, path, &[]).await);
    let first = timeout(GUARD, clock.next())
        .await
        .expect("the clock's first event")
        .unwrap();
    let second = timeout(GUARD, clock.next())
        .await
        .expect("the clock's second event")
        .unwrap();
    drop(clock);
    assert_eq!(
        (first.event.as_str(), second.event.as_str()),
        ("time", "time")
    );

    // The copied id: what followed it, from history.
    let mut resumed = events(stream(addr, path, &[("last-event-id", &first.id)]).await);
    let next = timeout(GUARD, resumed.next())
        .await
        .expect("the event after the copied id")
        .unwrap();
    assert_eq!(
        (next.event.as_str(), next.id.as_str()),
        ("time", second.id.as_str())
    );
    drop(resumed);

    // The old hint's `Last-Event-ID: 3`: an id the hub never gave, hence a reset.
    let mut reset = events(stream(addr, path, &[("last-event-id", "3")]).await);
    let next = timeout(GUARD, reset.next())
        .await
        .expect("the reset for an id the hub never gave")
        .unwrap();
    assert_eq!(next.event, "stream-reset");
    example.stop().await;
}

#[tokio::test]
async fn the_per_client_cap_trusts_only_the_named_proxy() {
    let proxy: IpAddr = [127, 0, 0, 1].into();
    let stranger: IpAddr = [127, 0, 0, 2].into();
    for (name, path) in capped_examples() {
        // Behind a trusted proxy: two streams per forwarded address.
        let envs = [
            ("ADDR", "127.0.0.1:0"),
            ("TRUST_PROXY", "127.0.0.1"),
            ("PER_CLIENT", "2"),
            ("MAX_STREAMS", "100"),
        ];
        let example = Running::start(name, &envs).await;
        let addr = example.addr;
        let mut open = Vec::new();
        let mut statuses = HashMap::new();
        let attempts: [(IpAddr, &str, &str, &str); 15] = [
            // (connection from, header, value, who it counts as)
            (proxy, "x-forwarded-for", "10.0.0.1", "a"),
            (proxy, "x-forwarded-for", "10.0.0.1", "a"),
            (proxy, "x-forwarded-for", "10.0.0.1", "a"),
            (proxy, "x-forwarded-for", "10.0.0.2", "b"),
            (proxy, "x-forwarded-for", "10.0.0.2", "b"),
            (proxy, "x-forwarded-for", "10.0.0.2", "b"),
            // The last hop is the proxy's own: what the client claimed before it is not.
            (proxy, "x-forwarded-for", "203.0.113.1, 10.0.0.3", "c"),
            (proxy, "x-forwarded-for", "203.0.113.2, 10.0.0.3", "c"),
            (proxy, "x-forwarded-for", "203.0.113.3, 10.0.0.3", "c"),
            (proxy, "x-real-ip", "10.0.0.4", "d"),
            (proxy, "x-real-ip", "10.0.0.4", "d"),
            (proxy, "x-real-ip", "10.0.0.4", "d"),
            // Not the proxy: its own address, whatever it forwards.
            (stranger, "x-forwarded-for", "10.0.0.5", "stranger"),
            (stranger, "x-forwarded-for", "10.0.0.6", "stranger"),
            (stranger, "x-real-ip", "10.0.0.7", "stranger"),
        ];
        for (from, header, value, who) in attempts {
            let (client, response) = stream_from(addr, from, path, &[(header, value)]).await;
            let status = response.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(response.headers().contains_key("retry-after"), "{name}");
            }
            statuses
                .entry(who)
                .or_insert_with(Vec::new)
                .push(status.as_u16());
            open.push((client, response));
        }
        for who in ["a", "b", "c", "d", "stranger"] {
            assert_eq!(
                statuses[who],
                [200, 200, 503],
                "{name}: the streams of {who} behind TRUST_PROXY=127.0.0.1, PER_CLIENT=2"
            );
        }
        drop(open);
        example.stop().await;

        // No proxy trusted: one address opens streams up to MAX_STREAMS, not fewer.
        let envs = [("ADDR", "127.0.0.1:0"), ("MAX_STREAMS", "40")];
        let example = Running::start(name, &envs).await;
        let mut open = Vec::new();
        for n in 1..=41 {
            let forwarded = format!("10.0.1.{n}");
            let (client, response) = stream_from(
                example.addr,
                proxy,
                path,
                &[("x-forwarded-for", &forwarded)],
            )
            .await;
            let expected = if n <= 40 { 200 } else { 503 };
            assert_eq!(
                response.status().as_u16(),
                expected,
                "{name}: stream {n} from one address, MAX_STREAMS=40, no TRUST_PROXY"
            );
            open.push((client, response));
        }
        drop(open);
        example.stop().await;

        // And by default, more than the 32 or 64 the examples once allowed one address.
        let example = Running::start(name, &[("ADDR", "127.0.0.1:0")]).await;
        let mut open = Vec::new();
        for n in 1..=65 {
            let (client, response) = stream_from(example.addr, proxy, path, &[]).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{name}: stream {n} from one address, default settings"
            );
            open.push((client, response));
        }
        drop(open);
        example.stop().await;
    }
}

/// `Last-Event-ID` values no browser sends but any client can: past `u64::MAX`,
/// negative, huge, not a number at all.
const HOSTILE_IDS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "-18446744073709551615",
    "99999999999999999999999999999999999999",
    "4294967295",
    "4294967296",
    "0",
    "00000000000000000000001",
    "abc",
    "1e3",
    "0x10",
    "+5",
    "1.5",
    " 7 ",
    "%",
];

#[tokio::test]
async fn hostile_last_event_ids_get_a_normal_answer() {
    let long = "9".repeat(1000);
    let mut values: Vec<&str> = HOSTILE_IDS.to_vec();
    values.push(&long);
    for name in examples() {
        let envs: &[(&str, &str)] = match name {
            "sensors" => &[("ADDR", "127.0.0.1:0"), ("INTERVAL_MS", "100")],
            "aircraft" => &[("ADDR", "127.0.0.1:0"), ("AIRCRAFT", "20")],
            _ => &[("ADDR", "127.0.0.1:0")],
        };
        let mut example = Running::start(name, envs).await;
        let addr = example.addr;
        // (path, whether its stream carries an event soon whatever the id)
        let paths: &[(&str, bool)] = match name {
            "hyper" => &[("/events?topic=clock", true)],
            "sensors" => &[("/events", true), ("/events?topic=office", true)],
            "aircraft" => &[("/events", true)],
            "axum" => &[("/events?topic=chat", false), ("/countdown", true)],
            _ => &[("/events", false)],
        };
        let mut asks = Vec::new();
        for &(path, flows) in paths {
            for &value in &values {
                asks.push((path, flows, value, true));
                asks.push((path, flows, value, false));
            }
        }
        let answers = asks.iter().map(|&(path, flows, value, header)| async move {
            let (uri, headers) = if header {
                (path.to_owned(), vec![("last-event-id", value)])
            } else {
                let separator = if path.contains('?') { '&' } else { '?' };
                let query: String = url_encoded(value);
                (format!("{path}{separator}lastEventId={query}"), Vec::new())
            };
            let what = format!("{name} {uri} {headers:?}");
            let response = stream(addr, &uri, &headers).await;
            let status = response.status();
            if name == "axum" && path == "/countdown" && value.trim() == "0" {
                // The client saw the last event: 204, which stops an EventSource.
                assert_eq!(status, StatusCode::NO_CONTENT, "{what}");
                return;
            }
            assert_eq!(status, StatusCode::OK, "{what}");
            let content_type = response.headers().get("content-type").cloned();
            assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("text/event-stream"),
                "{what}"
            );
            if flows {
                let event = timeout(GUARD, events(response).next())
                    .await
                    .unwrap_or_else(|_| panic!("{what}: no event"));
                assert!(event.is_some(), "{what}: the stream ended at once");
            }
        });
        futures_util::future::join_all(answers).await;

        // Still serving, and nothing panicked.
        let response = stream(addr, paths[0].0, &[]).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{name} after the hostile ids"
        );
        assert!(
            example.child.try_wait().unwrap().is_none(),
            "{name} exited: {:#?}",
            example.logged()
        );
        let log = example.logged();
        assert!(
            log.iter().all(|line| !line.contains("panicked")),
            "{name} panicked: {log:#?}"
        );
        example.stop().await;
        eprintln!("examples: {name} answered {} hostile ids", asks.len());
    }
}

/// `value` as a query string carries it.
fn url_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_connection_cap_follows_max_streams() {
    // The children inherit this process's open-file limit.
    let Some(files) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find_map(|l| l.strip_prefix("Max open files"))?;
            line.split_whitespace().next()?.parse::<usize>().ok()
        })
    else {
        return; // No /proc: the examples keep the server's default.
    };
    for (name, _) in capped_examples() {
        let envs = [
            ("ADDR", "127.0.0.1:0"),
            ("MAX_STREAMS", "20000"),
            ("RUST_LOG", "info,tower_sse=debug"),
        ];
        let mut example = Running::start(name, &envs).await;
        // The library's own line says the cap it applies.
        let line = example.line("max_connections=").await;
        let (_, cap) = line.split_once("max_connections=").unwrap();
        let cap: usize = cap.split_whitespace().next().unwrap().parse().unwrap();
        let least = (20_000 + 100).min(files.saturating_sub(64));
        assert!(
            (least..=files).contains(&cap),
            "{name}: {cap} connections for MAX_STREAMS=20000 with {files} open files"
        );
        example.stop().await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_serving_aircraft_instance_names_its_redis() {
    // A port that is bound but not listening: every connection to it is refused.
    let nothing = tokio::net::TcpSocket::new_v4().unwrap();
    nothing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = nothing.local_addr().unwrap().port();
    let url = format!("redis://:secret@127.0.0.1:{port}/");
    let shown = format!("redis://:***@127.0.0.1:{port}/");

    let mut example = Running::start(
        "aircraft",
        &[
            ("ADDR", "127.0.0.1:0"),
            ("REDIS_URL", &url),
            ("AIRCRAFT", "8"),
        ],
    )
    .await;
    example
        .line_with(&[
            "INFO",
            "served from the feed on Redis at",
            &shown,
            "REDIS_URL",
        ])
        .await;
    // The hub's own warning (the library's side), and the instance's.
    example.line_with(&["WARN", "tower_sse", "redis"]).await;
    example
        .line_with(&[
            "WARN",
            "no aircraft report from the feed on Redis at",
            &shown,
        ])
        .await;
    let log = example.logged();
    assert!(
        log.iter().all(|line| !line.contains("secret")),
        "the password is logged: {log:#?}"
    );
    example.stop().await;
    drop(nothing);
}
