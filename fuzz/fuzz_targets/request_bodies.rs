//! Any bytes as the body of every POST endpoint: a 4xx or a success, never a 5xx or a
//! panic. Runs the real application (in-memory SQLite) through poem's test client.
#![no_main]

use std::sync::LazyLock;

use authgate::config::Config;
use authgate::startup::Application;
use libfuzzer_sys::fuzz_target;
use poem::test::TestClient;

struct Harness {
    runtime: tokio::runtime::Runtime,
    client: TestClient<poem::endpoint::BoxEndpoint<'static>>,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = runtime.block_on(async {
        let mut config = Config::from_env().expect("configuration");
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.database_url = "sqlite::memory:".into();
        config.argon2_memory_kib = 1024;
        config.argon2_iterations = 1;
        config.rate_limit_per_ip = 0;
        Application::build(&config).await.expect("application").endpoint()
    });
    Harness {
        runtime,
        client: TestClient::new(endpoint),
    }
});

fuzz_target!(|data: &[u8]| {
    let harness = &*HARNESS;
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/revoke",
    ] {
        let status = harness.runtime.block_on(async {
            harness
                .client
                .post(path)
                .content_type("application/json")
                .body(data.to_vec())
                .send()
                .await
                .0
                .status()
        });
        assert!(status.as_u16() < 500, "{path} answered {status}");
    }
});
