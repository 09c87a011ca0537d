//! The test PostgreSQL server (`CRONBYTE_TEST_POSTGRES_URL`, which `.ci/run` always
//! sets) and databases of a test's own on it.

use sqlx::postgres::PgPool;

/// The server's URL; without one, says loudly on stderr that `what` did not run.
pub fn server_or_skip(what: &str) -> Option<String> {
    let url = std::env::var("CRONBYTE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        // Straight to stderr: the harness captures the output of passing tests.
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            format!(
                "\n*** {what} did NOT run: set CRONBYTE_TEST_POSTGRES_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/test) to run it ***\n"
            )
            .as_bytes(),
        );
    }
    url
}

/// A database of its own on `server`: its name (for [`drop_database`]) and URL.
pub async fn fresh_database(server: &str) -> (String, String) {
    let name = format!("cronbyte_test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(server).await.expect("PostgreSQL answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("a database is created");
    admin.close().await;
    let mut url = reqwest::Url::parse(server).expect("a URL");
    url.set_path(&format!("/{name}"));
    (name, url.to_string())
}

/// Drops a database [`fresh_database`] made, with any connection still open to it.
pub async fn drop_database(server: &str, name: &str) {
    let admin = PgPool::connect(server).await.expect("PostgreSQL answers");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("the database is dropped");
    admin.close().await;
}
