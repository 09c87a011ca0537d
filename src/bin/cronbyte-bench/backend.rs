//! Where a scenario keeps the history: the SQLite file in its directory, or a fresh
//! database on the PostgreSQL server `--store-url` names, dropped afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cronbyte::config::StoreSettings;
use cronbyte::store::Store;
use secrecy::SecretString;
use sqlx::postgres::PgPool;

pub enum Backend {
    Sqlite(PathBuf),
    Postgres {
        /// The server as given, to create and drop the database through.
        server: String,
        database: String,
        /// The fresh database's URL.
        url: String,
    },
}

impl Backend {
    /// The SQLite file `history.db` in `dir`, or a database made now on `server`.
    pub async fn new(dir: &Path, server: Option<&str>) -> anyhow::Result<Self> {
        let Some(server) = server else {
            return Ok(Self::Sqlite(dir.join("history.db")));
        };
        let database = format!("cronbyte_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(server)
            .await
            .context("--store-url does not answer")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let mut url = reqwest::Url::parse(server).context("--store-url is not a URL")?;
        url.set_path(&format!("/{database}"));
        Ok(Self::Postgres {
            server: server.to_owned(),
            database,
            url: url.to_string(),
        })
    }

    /// The PostgreSQL server it was made on, if any.
    pub fn server(&self) -> Option<&str> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres { server, .. } => Some(server),
        }
    }

    /// The `[store]` key that names it in a daemon's config.
    pub fn config_line(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("path = \"{}\"", path.display()),
            Self::Postgres { url, .. } => format!("url = \"{url}\""),
        }
    }

    pub fn settings(&self) -> StoreSettings {
        match self {
            Self::Sqlite(path) => StoreSettings {
                path: path.clone(),
                ..StoreSettings::default()
            },
            Self::Postgres { url, .. } => StoreSettings {
                url: Some(SecretString::from(url.clone())),
                ..StoreSettings::default()
            },
        }
    }

    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(cronbyte::store::open(&self.settings()).await?)
    }

    /// Opened without migrating, as `cronbyte history` opens it beside a daemon.
    pub async fn open_for_reading(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(cronbyte::store::open_for_reading(&self.settings()).await?)
    }

    /// Bytes the history takes: the file, or the runs table with its indexes.
    pub async fn bytes(&self) -> anyhow::Result<f64> {
        match self {
            Self::Sqlite(path) => Ok(std::fs::metadata(path)?.len() as f64),
            Self::Postgres { url, .. } => {
                let pool = PgPool::connect(url).await?;
                let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('runs')")
                    .fetch_one(&pool)
                    .await?;
                pool.close().await;
                Ok(bytes as f64)
            }
        }
    }

    /// Drops the database it made, if any.
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Self::Postgres {
            server, database, ..
        } = self
        {
            let admin = PgPool::connect(&server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&admin)
            .await?;
            admin.close().await;
        }
        Ok(())
    }
}
