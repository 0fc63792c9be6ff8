//! A real browser for the panel tests: Debian's `chromium` driven through `chromedriver` over
//! the W3C WebDriver protocol (JSON over HTTP, with the small client of `http.rs`). Headless,
//! without sandbox (CI runs as root), browser console captured for the "no script error" check.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{request, try_request};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium, or None (with a message) when either is
    /// not installed (`apt-get install chromium chromium-driver`; `.ci/run` installs them).
    pub fn start() -> Option<Browser> {
        let (Some(driver), Some(chromium)) = (
            which(&["chromedriver"]),
            which(&["chromium", "chromium-browser"]),
        ) else {
            eprintln!(
                "SKIPPED: chromium and chromedriver are not installed \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let (child, addr) = (0..5)
            .find_map(|_| Self::spawn_driver(&driver))
            .expect("chromedriver did not start on any of five ports");
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,900",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser {
            driver: child,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let answer = browser.call("POST", "/session", Some(caps));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Some(browser)
    }

    /// Starts chromedriver on a port that was free a moment ago and waits until it says it is
    /// ready. None when it exits first (another process took the port in between) or does not
    /// answer as chromedriver within 20 s; the caller tries another port.
    fn spawn_driver(driver: &std::path::Path) -> Option<(Child, SocketAddr)> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().expect("chromedriver status").is_some() {
                eprintln!("chromedriver on port {port} exited before it was ready");
                return None;
            }
            // Refused while it starts; reset or not HTTP if something else holds the port.
            if let Ok(answer) = try_request(addr, "GET", "/status") {
                if answer.status == 200
                    && serde_json::from_slice::<Value>(&answer.body)
                        .is_ok_and(|v| v["value"]["ready"] == true)
                {
                    return Some((child, addr));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("chromedriver on port {port} was not ready in 20 s");
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("encode"));
        let a = request(
            self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            bytes.as_deref(),
        );
        let v = a.json();
        assert_eq!(a.status, 200, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn go(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments` as in WebDriver) and returns its value.
    pub fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns true.
    pub fn wait_for(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.run(script) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page says: {}",
                self.run("return document.body.dataset.state + ' ' + (document.getElementById('error') || {}).textContent")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the panel page to say it is ready (or fails with what it says).
    pub fn wait_ready(&self) {
        self.wait_for(
            "return document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'",
            "the page",
        );
        let state = self.run("return document.body.dataset.state");
        assert_eq!(
            state,
            "ready",
            "{}",
            self.run("return document.getElementById('error').textContent")
        );
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.at("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        );
    }

    /// Switches into the `<iframe>` matched by `css` (or back to the top page with None).
    pub fn frame(&self, css: Option<&str>) {
        let id = match css {
            Some(css) => json!({ELEMENT: self.element(css)}),
            None => Value::Null,
        };
        self.call("POST", &self.at("/frame"), Some(json!({"id": id})));
    }

    /// The browser console since the last call: (level, source, message).
    pub fn console(&self) -> Vec<(String, String, String)> {
        let v = self.call(
            "POST",
            &self.at("/se/log"),
            Some(json!({"type": "browser"})),
        );
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["source"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The page as PNG bytes.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", &self.at("/screenshot"), None);
        decode_base64(v.as_str().expect("base64 screenshot"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(self.addr, "DELETE", &self.at(""), &[], None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let digits: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in digits.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..digits.len().saturating_sub(1)]);
    }
    out
}
