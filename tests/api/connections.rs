//! Slow and idle clients: the header timeout, the idle timeout and the connection cap.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Waits up to `limit` for the server to close `stream`; how long it took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // a response (408 or the like) before the close
        }
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_after_the_header_timeout() {
    let app = spawn_app_with(|config| config.header_timeout = 1).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One byte every 200 ms keeps a connection "active", not complete.
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    let mut reader = connect(&app).await; // a silent one, too
    let (_, silent) = tokio::join!(trickle, closed_within(&mut reader, Duration::from_secs(4)));

    let silent = silent.expect("a connection that sent nothing was kept open");
    assert!(silent < Duration::from_secs(3), "{silent:?}");
    let trickled = closed_within(&mut slow, Duration::from_secs(1)).await;
    assert!(
        trickled.is_some(),
        "the trickling connection was kept open for 4 s"
    );
}

#[tokio::test]
async fn slow_clients_at_the_connection_cap_keep_a_new_client_waiting_at_most_the_header_timeout() {
    let app = spawn_app_with(|config| {
        config.header_timeout = 1;
        config.max_connections = 4;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();

    assert_eq!(response.status(), StatusCode::OK);
    // The cap holds: the new client waits for a slot, until the slow ones time out.
    assert!(
        waited > Duration::from_millis(700),
        "{waited:?}: the cap did not hold"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn idle_keep_alive_connections_at_the_cap_make_room_for_a_new_client_at_once() {
    let app = spawn_app_with(|config| {
        config.header_timeout = 5;
        config.idle_timeout = 60;
        config.max_connections = 4;
    })
    .await;
    let mut idle = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let read = stream.read(&mut buf).await.unwrap();
        assert!(buf[..read].starts_with(b"HTTP/1.1 200"));
        idle.push(stream);
    }

    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(1), "{waited:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_closes_after_the_idle_timeout_not_the_header_timeout() {
    let app = spawn_app_with(|config| {
        config.header_timeout = 1;
        config.idle_timeout = 3;
    })
    .await;
    let mut stream = connect(&app).await;
    let request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    for pause in [Duration::ZERO, Duration::from_millis(1_500)] {
        tokio::time::sleep(pause).await;
        stream.write_all(request).await.unwrap();
        let read = stream.read(&mut buf).await.unwrap();
        assert!(buf[..read].starts_with(b"HTTP/1.1 200"), "after {pause:?}");
    }

    let closed = closed_within(&mut stream, Duration::from_secs(6)).await;

    let closed = closed.expect("an idle connection was kept open");
    assert!(closed > Duration::from_secs(2), "closed after {closed:?}");
}
