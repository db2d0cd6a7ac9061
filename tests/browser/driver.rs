//! A Rust handle on `tests/browser/driver.mjs`: Debian's Chromium, driven by
//! playwright-core, one command at a time, so that a test keeps its server in-process
//! and decides when the server changes and when the browser looks.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`, which
//! `tests/run.sh` installs. The tests that use it run with the feature `test-browser`
//! (a plain `cargo test` lists them as ignored); with the feature, when one is missing
//! the test fails, saying so; it never skips.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one command may take beyond its own timeout before the test gives up on the
/// driver (a hang guard, never a measurement).
const SLACK: Duration = Duration::from_secs(60);

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `<target dir>/browser-artifacts`: screenshots go there.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("browser-artifacts")
}

/// Fails, saying how to fix it, when the browser tests cannot run here.
pub fn require_browser_tools() {
    let chromium = std::env::var("TOWER_SSE_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium}: run tests/run.sh, which installs it \
         (apt-get install chromium) and the Node packages the browser tests need"
    );
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "{} is missing: run tests/run.sh (it runs `npm ci` in tests/browser)",
        playwright.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` does not run ({node:?}): the browser tests need Node.js 18 or newer on PATH"
    );
}

/// A response as the browser saw it.
#[derive(Debug, Deserialize)]
pub struct SeenResponse {
    pub url: String,
    pub status: u16,
    pub headers: std::collections::HashMap<String, String>,
}

/// What went wrong in every page the browser opened.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Errors {
    pub console_errors: Vec<Value>,
    pub page_errors: Vec<Value>,
    pub failed_requests: Vec<FailedRequest>,
    /// Requests the harness aborted because they were not to loopback.
    pub blocked_requests: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedRequest {
    pub url: String,
    pub error: Option<String>,
}

impl Errors {
    /// Fails unless the pages logged no error, threw nothing, asked for nothing outside
    /// loopback, and no request failed but those `allowed` accepts.
    pub fn assert_none(&self, allowed: impl Fn(&FailedRequest) -> bool) {
        assert!(
            self.console_errors.is_empty(),
            "console errors: {:#?}",
            self.console_errors
        );
        assert!(
            self.page_errors.is_empty(),
            "page errors: {:#?}",
            self.page_errors
        );
        assert!(
            self.blocked_requests.is_empty(),
            "the pages asked for something outside loopback (blocked): {:#?}",
            self.blocked_requests
        );
        let failed: Vec<_> = self
            .failed_requests
            .iter()
            .filter(|f| !allowed(f))
            .collect();
        assert!(failed.is_empty(), "failed requests: {failed:#?}");
    }
}

/// A running `driver.mjs` and its Chromium.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with a `width` x `height` viewport.
    pub async fn launch(width: u32, height: u32) -> Browser {
        require_browser_tools();
        let mut child = Command::new("node")
            .current_dir(browser_dir())
            .arg("driver.mjs")
            .arg("--artifacts")
            .arg(artifacts_dir())
            .arg("--width")
            .arg(width.to_string())
            .arg("--height")
            .arg(height.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        Browser {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 1,
        }
    }

    /// Sends one command and returns its answer (the whole JSON object).
    async fn call(&mut self, mut request: Value, timeout: Duration) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        let line = format!("{request}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("driver.mjs reads commands");
        let answer = tokio::time::timeout(timeout + SLACK, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("driver.mjs did not answer {request} in time"))
            .expect("driver.mjs stdout")
            .unwrap_or_else(|| panic!("driver.mjs exited before answering {request}"));
        let answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("driver.mjs printed {answer:?}: {e}"));
        assert_eq!(answer["id"], json!(id), "answers out of order: {answer}");
        assert!(
            answer["ok"] == json!(true),
            "driver.mjs failed {request}: {}",
            answer["error"].as_str().unwrap_or("?")
        );
        answer
    }

    /// Opens `url` in a new tab, waits for its `load` event, and returns its number.
    /// The tab reaches loopback only: any other request is aborted and recorded.
    pub async fn open(&mut self, url: &str) -> usize {
        let answer = self
            .call(json!({"op": "open", "url": url}), Duration::from_secs(30))
            .await;
        answer["value"].as_u64().expect("a page number") as usize
    }

    /// Like [`open`](Self::open), but runs the JavaScript `init` in the page before
    /// any script of its own (to take away an API the page would use, say).
    pub async fn open_with(&mut self, url: &str, init: &str) -> usize {
        let answer = self
            .call(
                json!({"op": "open", "url": url, "init": init}),
                Duration::from_secs(30),
            )
            .await;
        answer["value"].as_u64().expect("a page number") as usize
    }

    /// Waits until the JavaScript expression `expr` is truthy in `page`, and returns its
    /// value, or `None` after `timeout`.
    pub async fn wait(&mut self, page: usize, expr: &str, timeout: Duration) -> Option<Value> {
        let answer = self
            .call(
                json!({"op": "wait", "page": page, "expr": expr, "timeout": timeout.as_millis() as u64}),
                timeout,
            )
            .await;
        if answer["timedOut"] == json!(true) {
            None
        } else {
            Some(answer["value"].clone())
        }
    }

    /// Like [`wait`](Self::wait), but fails the test on timeout, showing `what` and the
    /// value of `show` (an expression) in the page.
    pub async fn expect(&mut self, page: usize, expr: &str, what: &str, show: &str) -> Value {
        match self.wait(page, expr, Duration::from_secs(30)).await {
            Some(value) => value,
            None => {
                let seen: Value = self.eval(page, show).await;
                panic!("{what}: `{expr}` stayed false; the page has {seen}");
            }
        }
    }

    /// The value of the JavaScript expression `expr` in `page`.
    pub async fn eval<T: DeserializeOwned>(&mut self, page: usize, expr: &str) -> T {
        let answer = self
            .call(
                json!({"op": "eval", "page": page, "expr": expr}),
                Duration::from_secs(30),
            )
            .await;
        serde_json::from_value(answer["value"].clone())
            .unwrap_or_else(|e| panic!("`{expr}` gave {}: {e}", answer["value"]))
    }

    /// Saves a screenshot of `page` as `<artifacts>/<name>.png`.
    pub async fn screenshot(&mut self, page: usize, name: &str) -> PathBuf {
        let answer = self
            .call(
                json!({"op": "screenshot", "page": page, "name": name}),
                Duration::from_secs(30),
            )
            .await;
        PathBuf::from(answer["value"].as_str().expect("a path"))
    }

    /// Every response `page` received so far.
    pub async fn responses(&mut self, page: usize) -> Vec<SeenResponse> {
        let answer = self
            .call(
                json!({"op": "responses", "page": page}),
                Duration::from_secs(30),
            )
            .await;
        serde_json::from_value(answer["value"].clone()).expect("responses")
    }

    /// Sends the Chrome DevTools Protocol command `method` with `params` to `page`, on
    /// a session of its own that stays open (so that what it sets stays set), and
    /// returns its result; with `event`, waits until that event fires and returns its
    /// params instead (`Debugger.pause` returns before the page is paused:
    /// `Debugger.paused` says it is).
    pub async fn cdp(
        &mut self,
        page: usize,
        method: &str,
        params: Value,
        event: Option<&str>,
    ) -> Value {
        let answer = self
            .call(
                json!({"op": "cdp", "page": page, "method": method, "params": params, "event": event}),
                Duration::from_secs(30),
            )
            .await;
        answer["value"].clone()
    }

    /// Closes `page`.
    pub async fn close_page(&mut self, page: usize) {
        self.call(
            json!({"op": "close", "page": page}),
            Duration::from_secs(30),
        )
        .await;
    }

    /// What went wrong in the pages so far.
    pub async fn errors(&mut self) -> Errors {
        let answer = self
            .call(json!({"op": "errors"}), Duration::from_secs(30))
            .await;
        serde_json::from_value(answer["value"].clone()).expect("errors")
    }

    /// Closes Chromium and waits for the driver to exit.
    pub async fn quit(mut self) {
        self.call(json!({"op": "quit"}), Duration::from_secs(30))
            .await;
        drop(self.stdin);
        let status = tokio::time::timeout(SLACK, self.child.wait())
            .await
            .expect("driver.mjs exits after quit")
            .expect("driver.mjs status");
        assert!(status.success(), "driver.mjs exited with {status}");
    }
}
