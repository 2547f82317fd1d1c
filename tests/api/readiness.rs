//! Readiness follows the database.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::str_field;

/// A TCP proxy to PostgreSQL that a test can cut and restore.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = std::sync::Arc::new(generation);
        let (accept_cut, accept_generation) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accept_cut.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "unreachable"
                }
                let upstream = upstream.clone();
                let mut cut_signal = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_signal.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            self.generation.send_modify(|generation| *generation += 1);
        }
    }
}

#[tokio::test]
async fn readiness_follows_the_database_without_a_restart() {
    // PostgreSQL runs on 127.0.0.1:5432 on the project's machines; .ci/run starts it.
    let admin = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!("authgate_test_{}", uuid::Uuid::new_v4().simple());
    {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&admin).await.unwrap();
        db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
    }
    let (scheme, rest) = admin.split_once("://").unwrap();
    let host = rest.split(['/', '?']).next().unwrap();
    let (userinfo, address) = host.rsplit_once('@').map_or(("", host), |(u, a)| (u, a));
    let proxy = CuttableProxy::start(address.to_owned()).await;
    let at = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    let url = format!("{scheme}://{at}127.0.0.1:{}/{name}", proxy.port);
    let app = crate::helpers::TestApp::start(crate::helpers::test_config(url)).await;
    let ready = || async {
        app.client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let wait_for = |wanted: StatusCode| async move {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if ready().await == wanted {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("readiness did not become {wanted} within 10 s");
    };
    assert_eq!(ready().await, StatusCode::OK);

    proxy.set_cut(true);
    let down_after = wait_for(StatusCode::SERVICE_UNAVAILABLE).await;
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    proxy.set_cut(false);
    let up_after = wait_for(StatusCode::OK).await;

    assert!(down_after < Duration::from_secs(5), "{down_after:?}");
    assert!(up_after < Duration::from_secs(5), "{up_after:?}");
    let (_, pair) = app.signed_in_user().await;
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::OK
    );
}
