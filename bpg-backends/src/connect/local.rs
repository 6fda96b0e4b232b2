//! `local://[?master=local[2]&spark_submit=PATH&working_dir=DIR&kill_grace=10s]`: a
//! [`LocalSparkBackend`].

use std::sync::Arc;

use async_trait::async_trait;
use bpg_core::{Backend, Connections, Result};

use super::Connection;
use super::factory::{BackendFactory, Settings, bad, in_connection, refuse_fields};
use crate::local::LocalSparkBackend;

/// Builds [`LocalSparkBackend`]s running `spark-submit` on this machine. Without
/// `spark_submit`, it is looked up in `$SPARK_HOME/bin`, on `PATH`, then in the `pyspark` package
/// of `python3`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFactory;

#[async_trait]
impl BackendFactory for LocalFactory {
    fn schemes(&self) -> Vec<String> {
        vec!["local".to_owned()]
    }

    async fn create(
        &self,
        connection: &Connection,
        _connections: &dyn Connections,
    ) -> Result<Arc<dyn Backend>> {
        const EXPECTED: [&str; 4] = ["master", "spark_submit", "working_dir", "kill_grace"];
        refuse_fields(
            connection,
            &["user", "password", "token", "region", "rules"],
            "a local connection takes only URL parameters (local://?master=local[2])",
        )?;
        let url = &connection.url;
        if !url.host_str().unwrap_or("").is_empty() || !matches!(url.path(), "" | "/") {
            return Err(bad(
                connection,
                format!(
                    "`{url}`: expected local:// with optional parameters {}",
                    EXPECTED.join(", ")
                ),
            ));
        }
        Settings::options(connection).finish(&[])?;
        let mut query = Settings::query(connection)?;
        let mut builder = LocalSparkBackend::builder().name(connection.name.clone());
        if let Some(master) = query.take("master") {
            builder = builder.master(master);
        }
        if let Some(path) = query.take("spark_submit") {
            builder = builder.spark_submit(path);
        }
        if let Some(dir) = query.take("working_dir") {
            builder = builder.working_dir(dir);
        }
        if let Some(grace) = query.duration("kill_grace")? {
            builder = builder.kill_grace(grace);
        }
        query.finish(&EXPECTED)?;
        let backend = builder.build().map_err(|e| in_connection(connection, e))?;
        Ok(Arc::new(backend))
    }
}
