//! The programs of README.md, built and run as a user would: in a fresh crate that
//! depends on this one by path, with exactly the dependencies the README tells users to
//! add (its `toml` blocks), and none of this crate's dev-dependencies. (The doctests of
//! README.md compile the same code with the dev-dependencies in scope, which hides a
//! missing dependency.)
//!
//! Every `rust` block becomes a binary: blocks without a `main` are wrapped in one, as
//! rustdoc does, and the hidden lines that only gate a block on this crate's own
//! features in its doctests are dropped (the fresh crate enables those features through
//! its dependency instead). Blocks marked `no_run` are built; the others are run and
//! must succeed. The Quick start is also run as a server, on a free port instead of
//! 3000, and must resume after the `Last-Event-ID` it is sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Block {
    info: String,
    code: String,
    line: usize,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut code = String::new();
        for (_, line) in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            code.push_str(line);
            code.push('\n');
        }
        blocks.push(Block {
            info: info.trim().to_owned(),
            code,
            line: n + 1,
        });
    }
    blocks
}

/// The dependencies the README's `toml` blocks add, merged: for each crate the version
/// of its first line and the features of all its lines together, so that a recipe that
/// asks for one more feature of a crate (tokio's `signal`, say) gets it only because
/// the README says so. `tower-sse` itself is this crate, by path.
fn dependencies(blocks: &[Block], root: &Path) -> String {
    // name -> (version, features)
    let mut deps: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
    for block in blocks.iter().filter(|b| b.info == "toml") {
        for line in block.code.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let (name, value) = line.split_once('=').expect("name = value");
            let (name, value) = (name.trim().to_owned(), value.trim());
            let (version, features) = if let Some(inline) = value.strip_prefix('{') {
                let version = inline
                    .split_once("version =")
                    .map(|(_, rest)| rest.trim().split('"').nth(1).unwrap().to_owned());
                let features = inline
                    .split_once("features = [")
                    .map(|(_, list)| list.split(']').next().unwrap())
                    .into_iter()
                    .flat_map(|list| list.split(','))
                    .map(|feature| feature.trim().trim_matches('"').to_owned())
                    .filter(|feature| !feature.is_empty())
                    .collect();
                (version, features)
            } else {
                (Some(value.trim_matches('"').to_owned()), Vec::new())
            };
            let entry = deps.entry(name).or_default();
            if entry.0.is_none() {
                entry.0 = version;
            }
            for feature in features {
                if !entry.1.contains(&feature) {
                    entry.1.push(feature);
                }
            }
        }
    }
    assert!(deps.len() > 1, "the README names its dependencies");
    let mut toml = String::new();
    for (name, (version, features)) in deps {
        let features: Vec<String> = features.iter().map(|f| format!("{f:?}")).collect();
        let features = features.join(", ");
        if name == "tower-sse" {
            let path = root.display().to_string();
            toml.push_str(&format!(
                "tower-sse = {{ path = {path:?}, features = [{features}] }}\n"
            ));
        } else {
            let version = version.unwrap_or_else(|| panic!("{name} has a version"));
            toml.push_str(&format!(
                "{name} = {{ version = {version:?}, features = [{features}] }}\n"
            ));
        }
    }
    toml
}

/// The code of a block as a program: hidden lines shown, feature gates dropped, and a
/// `main` around it when it has none.
fn program(block: &Block) -> String {
    let gate = |line: &str| {
        let line = line.trim();
        line.starts_with("# #[cfg(feature = ") && (line.ends_with(")]") || line.ends_with(")] {"))
    };
    let mut lines: Vec<&str> = block.code.lines().collect();
    if let Some(first) = lines.iter().position(|l| gate(l)) {
        let opens_block = lines[first].trim().ends_with('{');
        lines.remove(first);
        if opens_block {
            let last = lines
                .iter()
                .rposition(|l| l.trim() == "# }")
                .expect("a gate's block closes");
            lines.remove(last);
        }
    }
    let shown: Vec<String> = lines
        .iter()
        .map(|l| {
            let trimmed = l.trim_start();
            if trimmed == "#" {
                String::new()
            } else if let Some(rest) = trimmed.strip_prefix("# ") {
                rest.to_owned()
            } else {
                (*l).to_owned()
            }
        })
        .collect();
    let body = shown.join("\n");
    if body.contains("fn main(") {
        return body;
    }
    let last = shown.iter().rev().find(|l| !l.trim().is_empty()).unwrap();
    match last
        .trim()
        .strip_prefix("Ok::<(), ")
        .and_then(|rest| rest.strip_suffix(">(())"))
    {
        Some(error) => format!("fn main() -> Result<(), {error}> {{\n{body}\n}}\n"),
        None => format!("fn main() {{\n{body}\n}}\n"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn readme_programs_build_and_run_in_a_fresh_crate_with_the_readme_dependencies() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = blocks(&readme);
    let crate_dir = root.join("target").join("readme-crate");
    let _ = std::fs::remove_dir_all(crate_dir.join("src"));
    std::fs::create_dir_all(crate_dir.join("src/bin")).unwrap();
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"readme-programs\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [workspace]\n\n[dependencies]\n{}",
            dependencies(&blocks, &root)
        ),
    )
    .unwrap();
    // The versions this crate is tested with.
    std::fs::copy(root.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();

    // The crate's own documentation (the examples on docs.rs's front page) must build
    // with what the README lists too.
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let lib_docs: String = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
        .collect();
    let lib_blocks = self::blocks(&lib_docs).into_iter().map(|block| Block {
        // rustdoc's default language is Rust.
        info: match block.info.as_str() {
            "" => "rust".to_owned(),
            "no_run" => "rust,no_run".to_owned(),
            info => info.to_owned(),
        },
        ..block
    });
    let lib_blocks: Vec<Block> = lib_blocks.collect();
    let readme_blocks = blocks.iter().map(|b| ("line".to_owned(), b));

    let port = free_port();
    let mut programs = Vec::new();
    for (prefix, block) in readme_blocks
        .chain(lib_blocks.iter().map(|b| ("lib_line".to_owned(), b)))
        .filter(|(_, b)| b.info.split(',').next() == Some("rust"))
    {
        let name = format!("{prefix}_{}", block.line);
        let mut code = program(block);
        let quick_start = code.contains("127.0.0.1:3000") && code.contains("LastEventId");
        if quick_start {
            code = code.replace("127.0.0.1:3000", &format!("127.0.0.1:{port}"));
        }
        std::fs::write(crate_dir.join("src/bin").join(format!("{name}.rs")), code).unwrap();
        let run = !block.info.contains("no_run");
        programs.push((name, run, quick_start));
    }
    assert!(programs.len() >= 6, "the README's programs were found");
    assert!(
        programs
            .iter()
            .filter(|p| p.0.starts_with("lib_line"))
            .count()
            >= 2,
        "the crate's own examples were found"
    );
    assert_eq!(
        programs.iter().filter(|p| p.2).count(),
        1,
        "the Quick start was found"
    );

    let target = root.join("target").join("readme-target");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--bins", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "the README's programs build");

    for (name, run, quick_start) in &programs {
        let binary = target.join("debug").join(name);
        if *run {
            let output = Command::new(&binary).output().unwrap();
            assert!(
                output.status.success(),
                "{name} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if *quick_start {
            let child = Command::new(&binary)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let _child = Killed(child);
            let started = std::time::Instant::now();
            let mut socket = loop {
                // The server binds at start; until then the connection is refused.
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(socket) => break socket,
                    Err(error) => {
                        // A hang guard, as the read timeout below.
                        assert!(
                            started.elapsed() < Duration::from_secs(60),
                            "hang guard: {name} never listened on port {port}: {error}"
                        );
                        std::thread::yield_now()
                    }
                }
            };
            socket
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            socket
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nlast-event-id: 41\r\n\r\n")
                .unwrap();
            let mut reader = BufReader::new(socket.try_clone().unwrap());
            let mut seen = String::new();
            let mut line = String::new();
            while !seen.contains("id: 42\n") {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .expect("the server answers in time");
                assert!(n > 0, "the stream ended early:\n{seen}");
                seen.push_str(&line);
            }
            assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
            assert!(seen.contains("content-type: text/event-stream"), "{seen}");
            assert!(seen.contains("retry: 2000"), "{seen}");
            assert!(!seen.contains("id: 41\n"), "resumed after 41:\n{seen}");
            let mut rest = [0u8; 1];
            let _ = socket.read(&mut rest);
            drop(reader);
            drop(socket);

            // Whatever a client sends as its last event id, the Quick start answers
            // with a stream (a panic in the handler would end the connection without
            // an answer): the largest id, one past it, a negative one, a huge one,
            // one that is no number, and one longer than the layer reads.
            let long = "7".repeat(2000);
            for id in [
                "18446744073709551615",
                "18446744073709551616",
                "-1",
                "99999999999999999999999999999999",
                "abc",
                " 5",
                long.as_str(),
            ] {
                let first = quick_start_first_event(port, id);
                assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{id}: {first}");
                assert!(first.contains("event: tick\n"), "{id}: {first}");
            }
        }
    }
}

/// Asks the Quick start's server for its stream with `Last-Event-ID: id`: what it wrote
/// up to its first event (or until it closed the connection).
fn quick_start_first_event(port: u16, id: &str) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nlast-event-id: {id}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(socket);
    let mut seen = String::new();
    let mut line = String::new();
    while !seen.contains("event: tick\n") {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => seen.push_str(&line),
        }
    }
    seen
}
