//! The panel in a real browser (Debian's chromium through chromedriver) against a real server
//! over a store of the real lightcurves in data/: the neighbours it shows are the `similar`
//! answer, its canvases are drawn, the limits box hides the triangles, a vote click reaches the
//! API and changes `recommend`, no script error is logged, "tonight, for me" re-ranks by
//! votes, and a page on another loopback origin embeds it. Skipped, with a message, where
//! chromium is not installed (`.ci/run` installs it).
//!
//! `ASTERISM_SCREENSHOTS=docs cargo test --test panel` also writes the README's screenshots.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use asterism::engine::{RecommendQuery, SimilarQuery, Target};
use asterism::server::{Access, HttpConfig};
use common::served::{labelled_store, start};
use common::webdriver::Browser;
use serde_json::Value;

const ALICE: &str = "alice-token";

fn access() -> Access {
    Access {
        users: [("alice".to_string(), ALICE.to_string())]
            .into_iter()
            .collect(),
        ..Access::default()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or("").to_string())
        .collect()
}

fn number(b: &Browser, script: &str) -> f64 {
    let v = b.run(script);
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or_else(|| panic!("{script}: {v}"))
}

/// Script errors (uncaught exceptions, console.error) in the console since the last look.
fn script_errors(b: &Browser) -> Vec<String> {
    b.console()
        .into_iter()
        .filter(|(level, source, _)| level == "SEVERE" && source != "network")
        .map(|(_, _, m)| m)
        .collect()
}

#[test]
fn the_panel_shows_the_similar_answer_draws_it_and_hides_limits() {
    let Some(b) = Browser::start() else { return };
    let dir = labelled_store(&["ztf/ZTF18abxhyqv.tar.gz"]);
    let served = start(&dir.path().join("db"), access(), HttpConfig::default());
    let shots = std::env::var_os("ASTERISM_SCREENSHOTS");

    for (id, k, shot) in [
        ("ZTF18aadzfso", 10, "panel-snia.png"),
        ("1013184", 6, "panel-rrlyrae.png"),
        ("ZTF18abxhyqv", 5, ""),
    ] {
        b.go(&format!("http://{}/panel/{id}?k={k}", served.http));
        b.wait_ready();
        let shown = strings(&b.run(
            "return [...document.querySelectorAll('article.neighbour')].map(e => e.dataset.objectId)",
        ));
        let hits = served
            .engine()
            .find_similar(&SimilarQuery::new(Target::Object(id.into()), k))
            .unwrap();
        let expected: Vec<String> = hits.iter().map(|h| h.object_id.clone()).collect();
        assert_eq!(shown, expected, "{id}");
        assert_eq!(shown.len(), k);
        // The object's plot and every thumbnail have drawn points, on a non-blank canvas.
        let points = number(
            &b,
            "return document.getElementById('lightcurve').dataset.points",
        );
        let record = served.engine().object(id).unwrap();
        assert_eq!(points as usize, record.detections.len(), "{id}");
        assert!(
            number(
                &b,
                "return document.getElementById('lightcurve').dataset.inked"
            ) > 2000.0
        );
        let thumbs = b.run(
            "return [...document.querySelectorAll('article.neighbour canvas')].map(c => Number(c.dataset.points) > 0 && Number(c.dataset.inked) > 300)",
        );
        assert_eq!(thumbs, Value::Array(vec![Value::Bool(true); k]), "{id}");
        // Rank, distance, class with its source, detections and a link out, per neighbour.
        let first = b.run("return document.querySelector('article.neighbour').innerText");
        let first = first.as_str().unwrap();
        assert!(
            first.contains("#1") && first.contains(&expected[0]),
            "{first}"
        );
        assert!(first.contains("detections"), "{first}");
        assert!(
            b.run("return document.querySelector('#classification .prob') !== null") == true,
            "{id}: the neighbours' vote is shown"
        );
        if !shot.is_empty() {
            if let Some(out) = &shots {
                let png = b.screenshot();
                assert!(png.starts_with(b"\x89PNG"));
                std::fs::write(Path::new(out).join(shot), png).unwrap();
            }
        }
    }

    // The curves preset (ZTF18abxhyqv has difference fluxes: it came as packets): its
    // neighbours, ranked by how the lightcurves fit, are not explained by features.
    b.go(&format!(
        "http://{}/panel/ZTF18abxhyqv?k=5&features=curves",
        served.http
    ));
    b.wait_ready();
    let shown = strings(&b.run(
        "return [...document.querySelectorAll('article.neighbour')].map(e => e.dataset.objectId)",
    ));
    let mut q = SimilarQuery::new(Target::Object("ZTF18abxhyqv".into()), 5);
    q.features = asterism::embed::FeatureGroup::Curves;
    let expected: Vec<String> = served
        .engine()
        .find_similar(&q)
        .unwrap()
        .into_iter()
        .map(|h| h.object_id)
        .collect();
    assert_eq!(shown, expected);
    assert!(!shown.is_empty());
    let whys = strings(&b.run(
        "return [...document.querySelectorAll('article.neighbour .why')].map(e => e.innerText)",
    ));
    assert_eq!(
        whys,
        vec!["ranked by how the lightcurves fit".to_string(); shown.len()]
    );
    let title = b.run("return document.querySelector('article.neighbour .distance').title");
    assert!(
        title
            .as_str()
            .unwrap()
            .starts_with("mismatch of the lightcurves"),
        "{title}"
    );

    // ZTF18abxhyqv has upper limits: drawn as triangles, hidden by the box, back again.
    let limits = |b: &Browser| {
        number(
            b,
            "return document.getElementById('lightcurve').dataset.limits",
        )
    };
    let expected_limits = served
        .engine()
        .object("ZTF18abxhyqv")
        .unwrap()
        .upper_limits
        .len();
    assert!(expected_limits > 0);
    assert_eq!(limits(&b) as usize, expected_limits);
    b.click("#limits");
    assert_eq!(limits(&b), 0.0);
    let inked = "return document.getElementById('lightcurve').dataset.inked";
    assert!(number(&b, inked) > 2000.0);
    b.click("#limits");
    assert_eq!(limits(&b) as usize, expected_limits);
    assert_eq!(script_errors(&b), Vec::<String>::new());
    assert_eq!(
        b.run("return document.body.dataset.scriptErrors || '0'"),
        "0"
    );
}

#[test]
fn a_vote_click_reaches_the_api_and_changes_recommend_and_tonights_list() {
    let Some(b) = Browser::start() else { return };
    let dir = labelled_store(&[]);
    let served = start(&dir.path().join("db"), access(), HttpConfig::default());
    let engine = served.engine();
    engine
        .vote("alice", "ZTF18aadzfso", asterism::model::Vote::Up)
        .unwrap();
    let recommend = || {
        engine
            .recommend(&RecommendQuery {
                user: Some("alice".into()),
                top: 10,
                ..RecommendQuery::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.object_id)
            .collect::<Vec<_>>()
    };
    let before = recommend();

    b.go(&format!("http://{}/panel/1013184?k=5", served.http));
    b.wait_ready();
    b.type_into("#signin input[name=user]", "alice");
    b.type_into("#signin input[name=token]", ALICE);
    b.click("#signin button");
    b.wait_for(
        "return document.getElementById('who').textContent === 'signed in as alice'",
        "sign-in",
    );
    let target = strings(&b.run(
        "return [...document.querySelectorAll('article.neighbour')].map(e => e.dataset.objectId)",
    ))[1]
        .clone();
    b.click("article.neighbour[data-rank='2'] button.up");
    b.wait_for(
        "return document.querySelector(\"article.neighbour[data-rank='2']\").dataset.voted === 'up'",
        "the vote",
    );
    let after = recommend();
    assert_ne!(after, before);
    assert!(
        !after.contains(&target),
        "a voted object is not recommended"
    );
    // The page shows the new recommendations, as recommend answers them.
    b.wait_for(
        "return document.getElementById('recommendations').hidden === false",
        "recommendations",
    );
    let listed = strings(&b.run(
        "return [...document.querySelectorAll('#recommended li')].map(e => e.dataset.objectId)",
    ));
    assert_eq!(listed, after);

    // Tonight, for alice: her ranking, and a vote there re-ranks it.
    b.go(&format!(
        "http://{}/panel/anomalies?user=alice",
        served.http
    ));
    b.wait_ready();
    let listed = || {
        strings(&b.run(
            "return [...document.querySelectorAll('article.anomaly')].map(e => e.dataset.objectId)",
        ))
    };
    let first = listed();
    assert!(!first.is_empty());
    assert_eq!(
        b.run("return document.getElementById('title').textContent"),
        "Tonight's anomalies for alice"
    );
    assert_eq!(
        b.run("return [...document.querySelectorAll('article.anomaly canvas')].every(c => Number(c.dataset.points) > 0)"),
        true
    );
    let top = first[0].clone();
    b.click("article.anomaly[data-rank='1'] button.down");
    b.wait_for(
        &format!(
            "return document.querySelector('article.anomaly') !== null && document.querySelector('article.anomaly').dataset.objectId !== '{top}'"
        ),
        "the re-ranked list",
    );
    assert!(!listed().contains(&top));
    assert_eq!(script_errors(&b), Vec::<String>::new());
}

#[test]
fn a_page_on_another_loopback_origin_embeds_the_panel() {
    let Some(b) = Browser::start() else { return };
    let dir = labelled_store(&[]);
    // The host's origin must be known before the server starts: bind, then start.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    drop(listener);
    let host = format!("http://localhost:{host_port}");
    let served = start(
        &dir.path().join("db"),
        access(),
        HttpConfig {
            frame_ancestors: vec![host.clone()],
            object_url: Some("https://portal.example/objects/{id}".into()),
            ..HttpConfig::default()
        },
    );
    let html = format!(
        "<!doctype html><html><body><h1>A portal</h1>\
         <iframe id=\"asterism\" src=\"http://{}/embed/ZTF18aadzfso?k=4\" style=\"width:900px;height:150px\"></iframe>\
         <script>window.addEventListener('message', e => {{ if (e.data && e.data.type === 'asterism:height') {{ \
         document.getElementById('asterism').style.height = e.data.height + 'px'; document.body.dataset.height = e.data.height; }} }});</script>\
         </body></html>",
        served.http
    );
    let served_host = serve_on(host_port, html);
    assert_eq!(served_host, host);
    b.go(&format!("{host}/"));
    b.wait_for(
        "return Number(document.body.dataset.height || 0) > 400",
        "the embedded panel's height",
    );
    b.frame(Some("#asterism"));
    b.wait_ready();
    let shown = strings(&b.run(
        "return [...document.querySelectorAll('article.neighbour')].map(e => e.dataset.objectId)",
    ));
    assert_eq!(shown.len(), 4);
    assert_eq!(
        b.run("return document.querySelector('article.neighbour a').href"),
        format!("https://portal.example/objects/{}", shown[0])
    );
    b.frame(None);
    assert_eq!(script_errors(&b), Vec::<String>::new());
}

/// Serves one HTML page on 127.0.0.1:`port` until the test ends; returns its origin, named
/// `localhost` so that it differs from the server's `127.0.0.1` origin by host and port.
fn serve_on(port: u16, html: String) -> String {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let origin = format!("http://localhost:{port}");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    origin
}
